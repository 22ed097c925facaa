"""DINOv2 ViT members: the paper's configuration (ViT-S/14, fully fine-tuned per member).

Each member is its own transformers ``Dinov2Model`` plus a linear head over the 8 classes. A
member takes the canonical crop exactly as every other model does, (B, 1, 48, 48) from
:func:`uar_stream.model.preprocess.prepare_batch`, and turns it into what DINOv2 was trained on
inside the module (undo the FER normalisation, resize to ``image_size``, 3 channels, ImageNet
mean/std), so engines, ONNX export and the analyzer need nothing DINOv2-specific.

Weights on disk always use the Hugging Face hub key layout of ``facebook/dinov2-small``
(``encoder.layer.0.attention.attention.query.weight``, ...), whatever transformers version is
installed (5.x renamed these to ``attention.q_proj``): model directories stay portable.
transformers is an optional dependency (extra ``dinov2``) and imported only when used.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from uar_stream.errors import ModelError
from uar_stream.labels import NUM_CLASSES
from uar_stream.model.preprocess import PIXEL_MEAN, PIXEL_STD

#: ImageNet statistics DINOv2 was pre-trained with (RGB).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
POOLS = ("cls", "cls+mean")


@dataclass(frozen=True)
class DinoV2Arch:
    """One member's shape. Defaults are ViT-S/14 (facebook/dinov2-small) at 224x224."""

    hidden_size: int = 384
    layers: int = 12
    heads: int = 6
    mlp_ratio: int = 4  # MLP width 4 x 384 = 1536
    patch_size: int = 14
    image_size: int = 224  # the 48x48 crop is resized to this; a multiple of patch_size
    layer_norm_eps: float = 1e-6
    pool: str = "cls"  # head input: CLS token, or CLS concatenated with the mean patch token
    dropout: float = 0.0  # before the head (training only)
    drop_path: float = 0.0  # stochastic depth (training only)

    def __post_init__(self):
        if self.pool not in POOLS:
            raise ValueError(f"pool {self.pool!r} is not allowed; allowed: {', '.join(POOLS)}")
        if self.image_size % self.patch_size or self.image_size < self.patch_size:
            raise ValueError(f"image_size {self.image_size} must be a multiple of patch_size "
                             f"{self.patch_size}")
        if self.hidden_size % self.heads:
            raise ValueError(f"hidden_size {self.hidden_size} must be divisible by heads {self.heads}")

    @property
    def feature_dim(self) -> int:
        """Width of the head's input (doubled by the ``cls+mean`` pool)."""
        return self.hidden_size * (2 if self.pool == "cls+mean" else 1)

    @property
    def grid(self) -> int:
        """Patches per side."""
        return self.image_size // self.patch_size

    def to_dict(self) -> dict:
        """JSON-ready form (the manifest's ``arch``), named ``dinov2``."""
        return {"name": "dinov2", **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict) -> "DinoV2Arch":
        """Inverse of :meth:`to_dict`; an unknown key raises ValueError."""
        known = {f.name: f.type for f in fields(cls)}
        unknown = sorted(set(d) - set(known) - {"name"})
        if unknown:
            raise ValueError(f"unknown keys {unknown}")
        casts = {"int": int, "float": float, "str": str}
        return cls(**{k: casts[known[k]](v) for k, v in d.items() if k in known})


VIT_S14 = DinoV2Arch()


def _require_transformers():
    try:
        import transformers  # noqa: F401
    except ImportError:
        raise ModelError("the dinov2 backbone needs transformers: pip install 'uar-stream[dinov2]'") from None
    return transformers


def hf_config(arch: DinoV2Arch):
    """The transformers ``Dinov2Config`` for one member's backbone."""
    _require_transformers()
    from transformers import Dinov2Config

    return Dinov2Config(
        hidden_size=arch.hidden_size, num_hidden_layers=arch.layers, num_attention_heads=arch.heads,
        mlp_ratio=arch.mlp_ratio, patch_size=arch.patch_size, image_size=arch.image_size,
        layer_norm_eps=arch.layer_norm_eps, drop_path_rate=arch.drop_path,
        # The mask token serves masked-image pre-training only; a classifier never uses it.
        use_mask_token=False,
        # sdpa: fused attention on CPU/CUDA; it exports to ONNX as plain MatMul/Softmax.
        attn_implementation="sdpa",
    )


def to_pixels(x: torch.Tensor, image_size: int, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Canonical crops (B, 1, H, W), FER-normalised -> DINOv2 input (B, 3, S, S).

    ``scale``/``shift`` (1, 3, 1, 1) fold "undo FER stats, then ImageNet mean/std" into one
    multiply-add; broadcasting the single channel against them makes the 3 channels.
    """
    if x.shape[-1] != image_size or x.shape[-2] != image_size:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    return x * scale + shift


def _pixel_affine() -> tuple[torch.Tensor, torch.Tensor]:
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    # raw = x * PIXEL_STD + PIXEL_MEAN (in [0, 1]); out = (raw - mean) / std
    return PIXEL_STD / std, (PIXEL_MEAN - mean) / std


class DinoV2Member(nn.Module):
    """One member: ``Dinov2Model`` + linear head. forward(x (B, 1, H, W)) -> logits (B, C)."""

    def __init__(self, arch: DinoV2Arch = VIT_S14, num_classes: int = NUM_CLASSES):
        super().__init__()
        _require_transformers()
        from transformers import Dinov2Model

        self.arch = arch
        self.backbone = Dinov2Model(hf_config(arch))
        self.dropout = nn.Dropout(arch.dropout)
        self.head = nn.Linear(arch.feature_dim, num_classes)
        scale, shift = _pixel_affine()
        self.register_buffer("pixel_scale", scale, persistent=False)
        self.register_buffer("pixel_shift", shift, persistent=False)

    def pixels(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) canonical crops -> (B, 3, S, S) ImageNet-normalised pixels."""
        return to_pixels(x, self.arch.image_size, self.pixel_scale, self.pixel_shift)

    def classify(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) pixels -> logits (B, C)."""
        return self.classify_with_features(pixels)[0]

    def classify_with_features(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, S, S) pixels -> (logits (B, C), the head's input features (B, feature_dim))."""
        tokens = self.backbone(pixel_values=pixels).last_hidden_state  # (B, 1 + S*S/P^2, D)
        feats = tokens[:, 0]
        if self.arch.pool == "cls+mean":
            feats = torch.cat([feats, tokens[:, 1:].mean(dim=1)], dim=-1)
        return self.head(self.dropout(feats)), feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) canonical crops -> logits (B, C)."""
        return self.classify(self.pixels(x))


class DinoV2Ensemble(nn.Module):
    """M independent members behind the fused CNN's interface.

    forward(x): x (B, 1, H, W) (all members see the same face) or (B, M, H, W) (member m sees
    channel m). Returns logits (B, M, C). M ViTs cannot share grouped convolutions, so members
    run one after another; the input transform is computed once when they share the face.
    """

    def __init__(self, members: int, num_classes: int = NUM_CLASSES, arch: DinoV2Arch = VIT_S14):
        super().__init__()
        self.members = members
        self.num_classes = num_classes
        self.arch = arch
        self.nets = nn.ModuleList(DinoV2Member(arch, num_classes) for _ in range(members))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, M, C); the two input layouts are in the class docstring."""
        if x.shape[1] == 1:
            px = self.nets[0].pixels(x)
            return torch.stack([net.classify(px) for net in self.nets], dim=1)
        return torch.stack([net(x[:, m:m + 1]) for m, net in enumerate(self.nets)], dim=1)

    def logits_and_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, 1, H, W) -> (logits (B, M, C), head-input features (B, M, feature_dim))."""
        px = self.nets[0].pixels(x)
        outs = [net.classify_with_features(px) for net in self.nets]
        return (torch.stack([o[0] for o in outs], dim=1), torch.stack([o[1] for o in outs], dim=1))


# --- key layout -----------------------------------------------------------------------------

#: transformers >= 5 names (right) for the hub layout (left). Older versions use the hub names.
_RENAMES = (
    (".attention.attention.query.", ".attention.q_proj."),
    (".attention.attention.key.", ".attention.k_proj."),
    (".attention.attention.value.", ".attention.v_proj."),
    (".attention.output.dense.", ".attention.o_proj."),
)


def hub_name(key: str) -> str:
    """An installed-transformers backbone key -> its facebook/dinov2-small (hub) name."""
    for hub, local in _RENAMES:
        key = key.replace(local, hub)
    return key


def member_file_state(member: DinoV2Member) -> dict[str, torch.Tensor]:
    """A member's weights as written to ``member_XX.safetensors`` (hub layout, ``backbone.``/``head.``)."""
    out = {}
    for k, v in member.state_dict().items():
        out[hub_name(k)] = v
    return out


def load_member_file_state(member: DinoV2Member, state: dict[str, torch.Tensor]) -> None:
    """Inverse of :func:`member_file_state` (keys already checked against the architecture)."""
    local = {hub_name(k): k for k in member.state_dict()}
    member.load_state_dict({local[k]: v for k, v in state.items()}, strict=True)


def expected_member_file_state(arch: DinoV2Arch, num_classes: int) -> dict[str, torch.Tensor]:
    """Shapes (meta tensors) of one member file, for checking before anything is loaded."""
    with torch.device("meta"):
        return member_file_state(DinoV2Member(arch, num_classes))


# --- pre-trained backbone weights -------------------------------------------------------------

_PICKLE_MAGIC = (b"PK\x03\x04", b"\x80")  # torch.save zip archive; raw pickle (protocol 2+)
_PREFIXES = ("dinov2.", "model.", "backbone.")


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise ModelError(f"DINOv2 weights file not found: {path}")
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith(_PICKLE_MAGIC):
        raise ModelError(f"{path}: is a pickled PyTorch checkpoint (.bin/.pt); only safetensors are "
                         "loaded (unpickling can run code): use model.safetensors of facebook/dinov2-small")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise ModelError(f"{path}: not a valid safetensors file ({e})") from None


def resize_position_embeddings(pos: torch.Tensor, grid: int) -> torch.Tensor:
    """(1, 1 + g*g, D) -> (1, 1 + grid*grid, D), bicubic in fp32 (as transformers does at run
    time), so a model built for ``image_size`` needs no interpolation per forward."""
    n = pos.shape[1] - 1
    g = int(round(n ** 0.5))
    if g * g != n:
        raise ValueError(f"{n} patch positions are not a square grid")
    if g == grid:
        return pos
    patch = pos[:, 1:].float().reshape(1, g, g, -1).permute(0, 3, 1, 2)
    patch = F.interpolate(patch, size=(grid, grid), mode="bicubic", align_corners=False)
    patch = patch.permute(0, 2, 3, 1).reshape(1, grid * grid, -1)
    return torch.cat([pos[:, :1].float(), patch], dim=1)


def load_backbone_weights(path: str | Path, arch: DinoV2Arch = VIT_S14) -> dict[str, torch.Tensor]:
    """Read a Hugging Face ``facebook/dinov2-small``-layout safetensors file.

    Keys may carry a ``dinov2.``/``model.`` prefix (e.g. a ``Dinov2ForImageClassification``
    file; its ``classifier.*`` is ignored). Every tensor is checked against ``arch``; position
    embeddings are resized to ``arch.image_size``. Returns a state dict for ``Dinov2Model`` in
    the hub layout, fp32. Raises :class:`ModelError` naming the file and the problem.
    """
    path = Path(path)
    raw = _read_safetensors(path)
    for prefix in _PREFIXES:
        if any(k.startswith(prefix + "embeddings.") for k in raw):
            raw = {k[len(prefix):]: v for k, v in raw.items() if k.startswith(prefix)}
            break
    expected = {k[len("backbone."):]: v for k, v in expected_member_file_state(arch, NUM_CLASSES).items()
                if k.startswith("backbone.")}
    file_layers = {int(m.group(1)) for k in raw if (m := re.match(r"encoder\.layer\.(\d+)\.", k))}
    if file_layers and len(file_layers) != arch.layers:
        raise ModelError(f"{path}: has {len(file_layers)} transformer layers, the DINOv2 config needs "
                         f"{arch.layers} (ViT-S/14 = facebook/dinov2-small has 12)")
    missing = sorted(set(expected) - set(raw))
    if missing:
        raise ModelError(f"{path}: not a DINOv2 backbone in the facebook/dinov2-small layout "
                         f"(missing {missing[:3]}{' ...' if len(missing) > 3 else ''})")
    out = {}
    for k, ref in expected.items():
        t = raw[k]
        if k == "embeddings.position_embeddings" and t.ndim == 3 and t.shape[-1] == ref.shape[-1]:
            try:
                t = resize_position_embeddings(t, arch.grid)
            except ValueError as e:
                raise ModelError(f"{path}: tensor {k}: {e}") from None
        if tuple(t.shape) != tuple(ref.shape):
            raise ModelError(f"{path}: tensor {k} has shape {tuple(t.shape)}, the DINOv2 config "
                             f"(hidden {arch.hidden_size}, patch {arch.patch_size}) needs {tuple(ref.shape)}")
        out[k] = t.to(torch.float32).contiguous()
    return out


def init_member_from_backbone(member: DinoV2Member, backbone_state: dict[str, torch.Tensor]) -> None:
    """Load a :func:`load_backbone_weights` result into a member's backbone (head untouched)."""
    local = {hub_name(k): k for k in member.backbone.state_dict()}
    member.backbone.load_state_dict({local[k]: v for k, v in backbone_state.items()}, strict=True)


def load_dinov2_ensemble(model_dir: Path, man, verify_hashes: bool = True) -> DinoV2Ensemble:
    """A ``backbone: dinov2`` model directory (see :func:`uar_stream.model.ensemble.load_ensemble`)
    -> :class:`DinoV2Ensemble` in eval mode. ``man`` is its already-read Manifest."""
    from uar_stream.model.store import MANIFEST, load_member_states

    try:
        arch = DinoV2Arch.from_dict(man.arch)
    except (KeyError, TypeError, ValueError) as e:
        raise ModelError(f"{model_dir / MANIFEST}: bad 'arch' for backbone dinov2 ({e})") from None
    expected = expected_member_file_state(arch, len(man.classes))
    states = load_member_states(Path(model_dir), man, expected, verify_hashes)
    net = DinoV2Ensemble(man.members, len(man.classes), arch)
    for member, state in zip(net.nets, states, strict=True):
        load_member_file_state(member, state)
    return net.eval()
