"""The int8 engine shipped in the model directory, and which int8 file an engine runs.

A fresh install cannot build the int8 engine (calibration needs training faces, which the package
does not carry), so the model directory can ship one: ``engine_int8.onnx``, written by
``uar-stream build-engine --precision int8 --calibration train.npz --ship`` and recorded in the
manifest's ``int8`` entry (:class:`uar_stream.model.store.ShippedInt8`: file, sha256, the model
id and graph version it was quantised from, the calibration sample, the onnxruntime version).

:func:`find_int8` picks the file an int8 engine runs: a locally built cache file
(``onnx/<id>-int8.onnx``, which someone built on purpose) first, then the shipped file. The
shipped file is checked whenever the manifest names it: a sha256 that differs from the entry's is
a ModelError (a changed or corrupt file is never run); one quantised from other members, density
or graph, or with another int8 scheme (the entry's model id, graph version or scheme is not the
current one: stale), or a missing file, is not used and reported as a ``problem`` (a WARNING;
precision auto then falls back).
The entry is left out of :func:`uar_stream.model.store.model_id`, so recording it does not change
the id it records.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from uar_stream.backends.export import GRAPH_VERSION, INT8_HINT, INT8_SCHEME, check_onnx, ensure_onnx
from uar_stream.backends.quantize import CALIBRATION_FACES, CALIBRATION_SEED, calibration_sample, write_int8
from uar_stream.datasets.ferplus import content_sha256
from uar_stream.errors import ConfigError, ModelError
from uar_stream.model.store import MANIFEST, ShippedInt8, file_sha256, model_id, read_manifest, write_manifest

log = logging.getLogger("uar_stream.engine")

#: The shipped int8 file's name in the model directory.
SHIPPED_FILE = "engine_int8.onnx"
#: How to rebuild the shipped file (after retraining, refitting the density, a new graph).
SHIP_HINT = INT8_HINT + " --ship"


@dataclass(frozen=True)
class Int8File:
    """The int8 file an engine would run. ``path`` None: none is usable, ``why`` says why and how
    to build one. ``source``: ``built`` (the local cache) or ``shipped``. ``problem``: what is
    wrong with a shipped file that is not used (stale or missing), else empty."""

    path: Path | None
    source: str = ""
    why: str = ""
    problem: str = ""

    @property
    def note(self) -> str:
        """For the engine's log line: where the int8 file comes from."""
        return {"shipped": "int8 shipped with the model", "built": "int8 built locally"}.get(self.source, "")


def find_int8(model_dir: str | Path) -> Int8File:
    """The int8 file for this model: the local cache if valid, else the shipped file if it is
    intact and current. Raises ModelError when the shipped file's sha256 is not the manifest's."""
    model_dir = Path(model_dir)
    man = read_manifest(model_dir)
    entry = ShippedInt8.from_manifest(man)
    # the id hashes every weight file: computed once here for both checks of the shipped file
    key = model_id(model_dir) if entry else ""
    shipped, problem = _check_shipped(model_dir, entry, key) if entry else (None, "")
    try:
        return Int8File(ensure_onnx(model_dir, "int8"), "built", problem=problem)
    except ConfigError as e:  # not built locally (or an invalid cache file)
        not_built = str(e).removeprefix("engine.precision: int8: ")
    if shipped is not None:
        _check_shipped_graph(shipped, key, man.density is not None)
        return Int8File(shipped, "shipped")
    return Int8File(None, why=problem or not_built, problem=problem)


def _check_shipped(model_dir: Path, entry: ShippedInt8, key: str) -> tuple[Path | None, str]:
    """(the shipped file, "") when intact and current (``key``: the model's id); (None, why)
    when missing or stale. A file whose bytes are not the ones the manifest records is a
    ModelError."""
    path = model_dir / entry.file
    hint = SHIP_HINT.format(model=model_dir)
    if not path.is_file():
        return None, f"the int8 file {path} named by {MANIFEST} is missing; rebuild it: {hint}"
    if file_sha256(path) != entry.sha256:
        raise ModelError(f"{path}: sha256 differs from the manifest's int8 entry (file changed or corrupt)")
    if entry.model_id != key or entry.graph_version != GRAPH_VERSION:
        return None, (f"the shipped {path} is stale (quantised from model {entry.model_id}, graph "
                      f"{entry.graph_version}; this model is {key}, graph {GRAPH_VERSION}); rebuild "
                      f"it: {hint}")
    if entry.scheme != INT8_SCHEME:
        return None, (f"the shipped {path} is stale (int8 scheme {entry.scheme or 'u8s8, 8-bit weights'}"
                      f", which saturates on CPUs without VNNI; current scheme {INT8_SCHEME}); "
                      f"rebuild it: {hint}")
    return path, ""


def _check_shipped_graph(path: Path, key: str, has_density: bool) -> None:
    """The shipped file is the int8 uncertainty graph of model ``key`` (its own metadata agrees)."""
    expected = {"model_id": key, "graph_version": GRAPH_VERSION, "precision": "int8",
                "int8_scheme": INT8_SCHEME}
    reason = check_onnx(path, expected, has_density)
    if reason is not None:
        raise ModelError(f"{path}: not the int8 engine its manifest entry describes ({reason})")


def calibration_data_sha256(path: str | Path) -> str:
    """SHA-256 of a calibration file's ``images`` (and ``votes``) arrays: the content hash the
    manifest's ``training.data.train_sha256`` records for FER+ training data."""
    with np.load(path, allow_pickle=False) as d:
        return content_sha256(d["images"], d["votes"] if "votes" in d.files else None)


def ship_int8(model_dir: str | Path, calibration: str | Path, force: bool = False,
              n: int = CALIBRATION_FACES, seed: int = CALIBRATION_SEED) -> Path:
    """Quantise the model on ``calibration`` (the sample ``build_int8`` draws) into
    ``<model_dir>/engine_int8.onnx`` and record it in the manifest's ``int8`` entry.

    An intact, current shipped file calibrated on the same sample is kept unless ``force``. The
    model id does not change (the entry is not part of it); a check makes sure of that."""
    import onnxruntime

    model_dir = Path(model_dir)
    faces, sample_hash = calibration_sample(calibration, n, seed)
    man = read_manifest(model_dir)
    old = ShippedInt8.from_manifest(man)
    key = model_id(model_dir)
    if old is not None and not force and _same_sample(model_dir, old, key, sample_hash):
        log.info("engine: keeping the shipped %s (same model, same calibration sample)", old.file)
        return model_dir / old.file
    path = model_dir / SHIPPED_FILE
    fp32 = ensure_onnx(model_dir, "fp32")
    t0 = time.perf_counter()
    write_int8(fp32, path, faces, sample_hash, seed, Path(calibration).name)
    _check_shipped_graph(path, key, man.density is not None)
    calib = {"data_sha256": calibration_data_sha256(calibration), "sample_sha256": sample_hash,
             "faces": len(faces), "seed": seed, "file": Path(calibration).name}
    entry = ShippedInt8(SHIPPED_FILE, file_sha256(path), key, GRAPH_VERSION, calib, onnxruntime.__version__,
                        INT8_SCHEME)
    man.int8 = entry.to_dict()
    write_manifest(model_dir, man)
    if model_id(model_dir) != key:  # the entry must never feed the id it records
        raise ModelError(f"{model_dir / MANIFEST}: recording the int8 entry changed the model id")
    log.info("engine: shipped %s (int8, %d calibration faces) in %.1f s", path, len(faces),
             time.perf_counter() - t0)
    return path


def _same_sample(model_dir: Path, entry: ShippedInt8, key: str, sample_hash: str) -> bool:
    """The shipped file is intact, current and calibrated on this sample."""
    try:
        path, _ = _check_shipped(model_dir, entry, key)
    except ModelError:  # corrupt: rebuild it
        return False
    return path is not None and entry.calibration.get("sample_sha256") == sample_hash
