"""Model directories: a manifest plus one safetensors file per member.

Loading never unpickles: weights come from safetensors, and every tensor is checked against
the architecture the manifest names before it is used.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from uar_stream.errors import ModelError
from uar_stream.labels import CLASSES
from uar_stream.model.fused_cnn import CnnArch, FusedCnn, join_members

MANIFEST = "manifest.json"
FORMAT = "uar-stream-ensemble/1"


@dataclass
class Manifest:
    """What a model directory holds. ``metrics`` and ``training`` are informational."""

    members: int
    files: list[str]
    arch: dict
    backbone: str = "cnn"
    classes: list[str] = field(default_factory=lambda: list(CLASSES))
    input_size: int = 48
    normalization: dict = field(default_factory=dict)
    temperature: float = 1.0
    sha256: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    format: str = FORMAT
    #: Temperature the uncertainties are decomposed at (``temperature`` only calibrates the
    #: displayed probabilities). None: at ``temperature``, as models written before the field
    #: existed were; ``uar-stream fit-density`` writes 1.0 (docs/evaluation.md says why).
    decomposition_temperature: float | None = None
    #: The feature-density statistics: {"file", "sha256", "fit": {...}}; None: the model has none.
    density: dict | None = None
    #: The shipped int8 CPU engine (:class:`ShippedInt8` as a dict, written by ``uar-stream
    #: build-engine --precision int8 --ship``); None: the model ships none. Derived from the
    #: model, not part of it: :func:`model_id` leaves it out (the entry records that id).
    int8: dict | None = None

    @property
    def uncertainty_temperature(self) -> float:
        """The temperature the engine decomposes the members' predictions at."""
        t = self.decomposition_temperature
        return float(self.temperature if t is None else t)

    def to_dict(self) -> dict:
        """The manifest as written; fields added later are left out while None, so the files
        (and the ids) of models written before them do not change."""
        return {k: v for k, v in self.__dict__.items() if not (k in _OPTIONAL and v is None)}

    def to_json(self) -> str:
        """The manifest file's text."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)


_OPTIONAL = ("decomposition_temperature", "density", "int8")
#: Manifest keys that :func:`model_id` does not hash: artifacts derived from the model that
#: record its id themselves (hashing them would make the id depend on itself).
_NOT_IDENTITY = ("int8",)
#: Keys a manifest's ``int8`` entry must have (:class:`ShippedInt8`).
_INT8_KEYS = ("file", "sha256", "model_id", "graph_version")


@dataclass(frozen=True)
class ShippedInt8:
    """The manifest's ``int8`` entry: a quantised engine file shipped in the model directory.

    ``model_id`` and ``graph_version`` name what it was quantised from (the members, density
    and manifest as :func:`model_id` hashes them; the exported graph's version): when either
    differs from the current model the file is stale. ``calibration`` holds the sample's
    ``data_sha256``, ``faces`` and ``seed``; ``onnxruntime`` the version that quantised it;
    ``scheme`` how it was quantised (empty in entries written before the field existed)."""

    file: str
    sha256: str
    model_id: str
    graph_version: str
    calibration: dict = field(default_factory=dict)
    onnxruntime: str = ""
    scheme: str = ""

    @classmethod
    def from_manifest(cls, man: Manifest) -> ShippedInt8 | None:
        """The entry of ``man`` (checked by :func:`read_manifest`), or None when it has none."""
        if man.int8 is None:
            return None
        known = {k: man.int8[k] for k in cls.__dataclass_fields__ if k in man.int8}
        return cls(**{**known, "graph_version": str(man.int8["graph_version"])})

    def to_dict(self) -> dict:
        """The entry as the manifest stores it."""
        return dict(self.__dict__)


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(model_dir: str | Path, man: Manifest) -> None:
    """Replace ``model_dir``'s manifest atomically (a temporary file, then renamed), so a
    reader never sees half a manifest and an interrupted write leaves the old one."""
    path = Path(model_dir) / MANIFEST
    tmp = path.with_name(f".{MANIFEST}.{os.getpid()}.tmp")
    tmp.write_text(man.to_json() + "\n")
    os.replace(tmp, path)


def read_manifest(model_dir: str | Path) -> Manifest:
    """Read and check ``<model_dir>/manifest.json``; ModelError names the file and the problem."""
    model_dir = Path(model_dir)
    path = model_dir / MANIFEST
    if not model_dir.is_dir():
        raise ModelError(f"model directory not found: {model_dir}")
    if not path.is_file():
        raise ModelError(f"{path}: missing (a model directory needs {MANIFEST} + member weights)")
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ModelError(f"{path}: not valid JSON ({e})") from None
    if raw.get("format") != FORMAT:
        raise ModelError(f"{path}: format is {raw.get('format')!r}, expected {FORMAT!r}")
    try:
        man = Manifest(**raw)
    except TypeError as e:
        raise ModelError(f"{path}: unexpected or missing keys ({e})") from None
    if man.members != len(man.files) or man.members < 1:
        raise ModelError(f"{path}: 'members' is {man.members} but {len(man.files)} weight files are listed")
    if len(man.classes) < 2:
        raise ModelError(f"{path}: 'classes' must list at least 2 classes")
    t = man.decomposition_temperature
    if t is not None and not (isinstance(t, (int, float)) and 0.05 <= t <= 20.0):
        raise ModelError(f"{path}: 'decomposition_temperature' is {t!r}; allowed: a number in 0.05-20")
    if man.density is not None and not (isinstance(man.density, dict) and "file" in man.density
                                        and "sha256" in man.density):
        raise ModelError(f"{path}: 'density' must name its 'file' and 'sha256'")
    _check_int8_entry(path, man.int8)
    return man


def _check_int8_entry(path: Path, entry: object) -> None:
    """The manifest's ``int8`` entry, if any, names a file in the model directory and its hashes."""
    if entry is None:
        return
    if not (isinstance(entry, dict) and all(k in entry for k in _INT8_KEYS)):
        raise ModelError(f"{path}: 'int8' must name its {', '.join(map(repr, _INT8_KEYS))}")
    name = entry["file"]
    if not isinstance(name, str) or not name or Path(name).name != name:
        raise ModelError(f"{path}: 'int8' file {name!r} must be a file name in the model directory")


def density_path(model_dir: str | Path, man: Manifest, verify_hash: bool = True) -> Path | None:
    """The model's density file, hash-checked; None when the manifest names none."""
    if man.density is None:
        return None
    path = Path(model_dir) / man.density["file"]
    if not path.is_file():
        raise ModelError(f"density file not found: {path}")
    if verify_hash and file_sha256(path) != man.density["sha256"]:
        raise ModelError(f"{path}: sha256 differs from the manifest (file changed or corrupt)")
    return path


def write_member(path: Path, state: dict[str, torch.Tensor], fp16: bool = True) -> None:
    """Save one member's (M=1) weights; fp16 halves the shipped size (BN stats stay fp32)."""
    out = {}
    for k, v in state.items():
        keep32 = "running_" in k or not v.is_floating_point()
        out[k] = v.detach().to(torch.float32 if keep32 or not fp16 else torch.float16).contiguous()
    save_file(out, str(path))


def _load_member(path: Path, expected: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ModelError(f"weights file not found: {path}")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise ModelError(f"{path}: not a valid safetensors file ({e})") from None
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        raise ModelError(f"{path}: tensors do not match the manifest's architecture "
                         f"(missing {missing[:3]}, unexpected {extra[:3]})")
    for k, ref in expected.items():
        if tuple(state[k].shape) != tuple(ref.shape):
            raise ModelError(f"{path}: tensor {k} has shape {tuple(state[k].shape)}, "
                             f"the manifest's architecture needs {tuple(ref.shape)}")
        state[k] = state[k].to(torch.float32)
    return state


def load_member_states(model_dir: Path, man: Manifest, expected: dict[str, torch.Tensor],
                       verify_hashes: bool = True) -> list[dict[str, torch.Tensor]]:
    """Every member file of ``man``, hash-checked and checked against ``expected`` (name ->
    tensor of the right shape; meta tensors will do), as fp32 state dicts."""
    states = []
    for name in man.files:
        path = model_dir / name
        if verify_hashes and name in man.sha256 and path.is_file():
            if file_sha256(path) != man.sha256[name]:
                raise ModelError(f"{path}: sha256 differs from the manifest (file changed or corrupt)")
        states.append(_load_member(path, expected))
    return states


def load_fused(model_dir: str | Path, verify_hashes: bool = True) -> tuple[FusedCnn, Manifest]:
    """Load a model directory into one fused module (eval mode, temperature not applied)."""
    model_dir = Path(model_dir)
    man = read_manifest(model_dir)
    if man.backbone != "cnn":
        raise ModelError(f"{model_dir}: backbone {man.backbone!r} cannot be fused by load_fused; "
                         "allowed: 'cnn'")
    try:
        arch = CnnArch.from_dict(man.arch)
    except (KeyError, TypeError, ValueError) as e:
        raise ModelError(f"{model_dir / MANIFEST}: bad 'arch' ({e})") from None
    single = FusedCnn(1, len(man.classes), arch)
    expected = {k: v for k, v in single.state_dict().items() if not k.endswith("num_batches_tracked")}
    states = load_member_states(model_dir, man, expected, verify_hashes)
    net = FusedCnn(man.members, len(man.classes), arch)
    net.load_state_dict(join_members(states), strict=False)
    net.eval()
    return net, man


#: Hex digits in a model id: 64 bits, ample to tell a project's models apart.
MODEL_ID_LENGTH = 16


def model_id(model_dir: str | Path) -> str:
    """The model's identity, the one id everything uses: run events, built engines' file names
    and metadata, evaluation reports, calibrated configs and the prediction cache.

    The first :data:`MODEL_ID_LENGTH` hex digits of a SHA-256 over the manifest (as parsed,
    so its formatting does not count; every field does, temperature and metrics included, except
    the shipped int8 engine's entry, which records this id) and the SHA-256 of each weight file
    (and the density file) as it is on disk, in manifest order. A file whose hash differs
    from the one the manifest records raises ModelError, so a changed or corrupt file can never
    pass for the model it replaced, nor reuse an engine built from the old weights."""
    model_dir = Path(model_dir)
    man = read_manifest(model_dir)
    doc = {k: v for k, v in man.to_dict().items() if k not in _NOT_IDENTITY}
    # canonical JSON: neither indentation nor key order in the file changes the id
    h = hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode())
    for name in man.files:
        path = model_dir / name
        if not path.is_file():
            raise ModelError(f"weights file not found: {path}")
        digest = file_sha256(path)
        if name in man.sha256 and digest != man.sha256[name]:
            raise ModelError(f"{path}: sha256 differs from the manifest (file changed or corrupt)")
        h.update(digest.encode())
    dens = density_path(model_dir, man)  # checked against its manifest hash (which is hashed above)
    if dens is not None:
        h.update(file_sha256(dens).encode())
    return h.hexdigest()[:MODEL_ID_LENGTH]
