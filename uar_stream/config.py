"""Typed configuration: dataclasses with defaults, loaded from YAML and validated.

Every error names the key (``section.key``) and what is allowed. ``configs/default.yaml``
lists every key with its default; a test keeps it equal to these dataclasses.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from uar_stream.errors import ConfigError


def _opt(default, *, choices=None, lo=None, hi=None, doc=""):
    return field(default=default, metadata={"choices": choices, "lo": lo, "hi": hi, "doc": doc})


@dataclass
class ModelConfig:
    """``model:``: which model directory to load."""

    #: Model directory (manifest.json + member weights). Relative paths are tried against the
    #: working directory, then the uar-stream checkout/installation.
    path: str = "engines/default"


@dataclass
class DetectorConfig:
    """``detector:``: MediaPipe face detection (range model, score and size floors, faces per frame)."""

    #: fast: one whole-frame pass of `model`; accurate: full-range on the whole frame and on
    #: overlapping tiles + short-range, merged by NMS; auto: tiles only where faces may be small.
    mode: str = _opt("auto", choices=("fast", "accurate", "auto"))
    model: str = _opt("full", choices=("full", "short"))  # fast mode's one model
    min_confidence: float = _opt(0.65, lo=0.05, hi=0.99)
    min_face_px: int = _opt(16, lo=4, hi=4096)
    max_faces: int = _opt(64, lo=1, hi=256)
    tile_px: int = _opt(480, lo=64, hi=8192)  # side of a square tile, frame pixels
    tile_overlap: float = _opt(0.3, lo=0.0, hi=0.9)  # share of a tile shared with a neighbour
    tile_from_px: int = _opt(960, lo=64, hi=100000)  # auto: tile frames whose longer side is >= this
    nms_iou: float = _opt(0.3, lo=0.0, hi=1.0)  # overlap above which two detections are one face
    #: accurate: a face below min_confidence is kept when this many of the 5 tile passes
    #: (full-range plain/flipped/CLAHE, short-range on smaller tiles plain/flipped) agree; 0: off.
    votes: int = _opt(3, lo=0, hi=5)
    vote_min_confidence: float = _opt(0.5, lo=0.05, hi=0.99)  # score floor of a vote
    #: accurate: MTCNN (pipeline/mtcnn.py, weights shipped with the package) on the whole frame as a
    #: second proposer, for faces no BlazeFace pass finds; fast and auto never run it.
    mtcnn: bool = True
    #: auto: YuNet (pipeline/yunet.py, weights shipped with the package) on the whole frame, for faces no
    #: BlazeFace pass finds; fast and accurate never run it (it adds none to accurate: docs/faces.md).
    yunet: bool = True
    #: YuNet's least score (0.9: its authors' default); its faces must also pass min_confidence.
    yunet_min_confidence: float = _opt(0.9, lo=0.05, hi=0.99)


@dataclass
class QualityConfig:
    """``quality:``: face quality gates (pipeline/quality.py); a face outside a limit is routed
    out_of_distribution with reason pose, too_small, too_dark or blurred."""

    enabled: bool = True
    max_yaw_deg: float = _opt(50.0, lo=0.0, hi=90.0)  # head turned left/right (from keypoints)
    max_pitch_deg: float = _opt(40.0, lo=0.0, hi=90.0)  # head tilted up/down
    max_roll_deg: float = _opt(50.0, lo=0.0, hi=180.0)  # in-plane tilt (alignment removes some)
    min_face_px: float = _opt(24.0, lo=0.0, hi=4096.0)  # face width (or 2.5 eye distances)
    min_brightness: float = _opt(30.0, lo=0.0, hi=255.0)  # mean gray of the aligned 48x48 crop
    min_sharpness: float = _opt(60.0, lo=0.0, hi=100000.0)  # Laplacian variance of the crop


@dataclass
class EngineConfig:
    """``engine:``: the inference backend (see :func:`uar_stream.backends.create_engine`)."""

    backend: str = _opt("auto", choices=("auto", "onnxruntime", "torch", "tensorrt"))
    device: str = _opt("auto", choices=("auto", "cpu", "cuda"))
    # auto: int8 on onnxruntime CPU when the model has an int8 file (engines/default ships one;
    # or `uar-stream build-engine --precision int8`), else fp32; int8: onnxruntime on the CPU only
    precision: str = _opt("auto", choices=("auto", "fp32", "fp16", "bf16", "int8"))
    max_batch: int = _opt(64, lo=1, hi=1024)
    threads: int = _opt(0, lo=0, hi=256)  # 0: let the backend decide
    #: Average each face with its mirror image: twice the engine time, measured gain in
    #: docs/engines.md#flip-test-time-augmentation.
    flip_tta: bool = False

    def __post_init__(self):
        # Checked here, not when the engine is built: a camera config that cannot run int8
        # fails when it is loaded, naming both keys.
        if self.precision == "int8" and (self.backend in ("torch", "tensorrt") or self.device == "cuda"):
            which = f"engine.backend is {self.backend}" if self.backend in ("torch", "tensorrt") \
                else "engine.device is cuda"
            raise ConfigError(f"engine.precision: int8 runs on backend onnxruntime, device cpu only; "
                              f"{which} (allowed with int8: backend auto or onnxruntime, device auto or cpu)")


@dataclass
class RoutingConfig:
    """``routing:``: the OOD gate and the thresholds that send a face to confident, ambiguous or
    rejected (pipeline/routing.py)."""

    #: Which signal rejects a face as unfamiliar: mutual_information (epistemic > tau_epistemic,
    #: the paper's gate), density (feature density > tau_density) or either (the OR of both).
    #: The default was chosen on the validation corruptions (docs/evaluation.md); a model without
    #: a density file gates on mutual information whatever this says (with a warning).
    ood_gate: str = _opt("density", choices=("mutual_information", "density", "either"))
    #: Thresholds in nats (natural-log entropy). Set by ``uar-stream calibrate``.
    tau_epistemic: float = _opt(0.0635, lo=0.0, hi=10.0)
    tau_aleatoric: float = _opt(1.4223, lo=0.0, hi=10.0)
    #: Threshold on the feature-density score (its own unit: ~1 for a typical training face).
    tau_density: float = _opt(1.5066, lo=0.0, hi=1.0e6)


@dataclass
class OverlayConfig:
    """``overlay:``: what is drawn on the annotated frames."""

    enabled: bool = True
    bars: bool = True
    fps: bool = True
    top_k: int = _opt(2, lo=1, hi=8)
    font_scale: float = _opt(0.0, lo=0.0, hi=10.0)  # 0: scale with frame height
    color_confident: list = field(default_factory=lambda: [60, 200, 60])  # BGR
    color_ambiguous: list = field(default_factory=lambda: [0, 180, 255])
    color_out_of_distribution: list = field(default_factory=lambda: [40, 40, 230])


@dataclass
class EventsConfig:
    """``events:``: which face results go to the JSONL event log."""

    #: When to log a face result: every_frame, on_change (route or label changed for the
    #: face at that place), every_n (every n-th frame), off.
    faces: str = _opt("on_change", choices=("every_frame", "on_change", "every_n", "off"))
    every_n: int = _opt(15, lo=1, hi=100000)
    probs: bool = True  # include the 8-class distribution in face events
    #: Rotate the JSONL file before it passes this size (MiB): it becomes FILE-STEM.NNNN.jsonl;
    #: 0 = never rotate. With keep, the log cannot fill a disk (docs/events.md#rotation).
    max_mb: float = _opt(100.0, lo=0.0, hi=1048576.0)
    keep: int = _opt(10, lo=1, hi=100000)  # rotated files kept (the oldest are deleted)
    compress: bool = False  # gzip rotated files (FILE-STEM.NNNN.jsonl.gz)


@dataclass
class OutputConfig:
    """``output:``: the annotated video file."""

    codec: str = _opt("mp4v", choices=("mp4v", "avc1", "MJPG", "XVID"))


@dataclass
class SourceConfig:
    """``source:``: reading frames (buffering, pipelining, reconnects, stream timeouts)."""

    #: What to do when frames arrive faster than they are analysed. auto: files -> wait
    #: (every frame, back-pressure), live -> newest_only; drop_oldest keeps buffer_size frames.
    buffer_policy: str = _opt("auto", choices=("auto", "wait", "drop_oldest", "newest_only"))
    buffer_size: int = _opt(4, lo=1, hi=1024)
    #: Detect + align faces on a capture-side thread so it overlaps inference on the last frame.
    pipelined: bool = True
    batch_frames: int = _opt(4, lo=1, hi=64)  # files: classify up to this many ready frames at once
    reconnect_attempts: int = _opt(5, lo=0, hi=1000000)  # live sources; 0 = give up at once
    backoff_initial_s: float = _opt(0.5, lo=0.0, hi=600.0)
    backoff_max_s: float = _opt(8.0, lo=0.0, hi=3600.0)
    open_timeout_s: float = _opt(5.0, lo=0.1, hi=600.0)  # FFmpeg open (streams)
    read_timeout_s: float = _opt(3.0, lo=0.1, hi=600.0)  # FFmpeg read: a dead stream is lost after this
    rtsp_transport: str = _opt("tcp", choices=("tcp", "udp", "auto"))


@dataclass
class TrackingConfig:
    """``tracking:``: face ids across frames, smoothing and route hysteresis."""

    enabled: bool = True
    #: Per-track smoothing of probabilities and both uncertainties: ema, window (mean of the
    #: last `window` frames) or off.
    smoothing: str = _opt("ema", choices=("ema", "window", "off"))
    alpha: float = _opt(0.4, lo=0.01, hi=1.0)  # ema weight of the newest frame
    window: int = _opt(5, lo=1, hi=300)
    hysteresis_frames: int = _opt(3, lo=1, hi=300)  # route/label change after k agreeing frames
    #: A track gets an id (and track_started) after this many consecutive frames; until then
    #: its faces are shown without an id, and a face seen once never becomes a track.
    min_hits: int = _opt(3, lo=1, hi=300)
    #: Streams: a whole-frame detection every k frames, only around the followed faces in
    #: between; re-classify a face that stayed in place every m frames (1 = every frame).
    detect_every: int = _opt(1, lo=1, hi=300)
    classify_every: int = _opt(1, lo=1, hi=300)
    #: Streams, between whole-frame passes: search around the followed faces every j frames;
    #: a frame in between keeps the last frame's faces (and results). 1 = every frame.
    follow_every: int = _opt(1, lo=1, hi=300)
    max_age: int = _opt(15, lo=1, hi=10000)  # frames a lost track is kept before it ends
    min_iou: float = _opt(0.2, lo=0.0, hi=1.0)  # least IoU (with the predicted box) to keep an id
    #: A frame this different from the last (mean abs difference of contrast-normalised
    #: 64x36 thumbnails) is a scene cut: every track ends there. 0 = never.
    scene_cut: float = _opt(0.6, lo=0.0, hi=10.0)


@dataclass
class AnalyzerConfig:
    """The whole configuration: one section per key of ``configs/default.yaml``."""

    model: ModelConfig = field(default_factory=ModelConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    overlay: OverlayConfig = field(default_factory=OverlayConfig)
    events: EventsConfig = field(default_factory=EventsConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    source: SourceConfig = field(default_factory=SourceConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    def to_dict(self) -> dict:
        """Plain nested dict of every key (YAML/JSON-ready)."""
        return dataclasses.asdict(self)

    def digest(self) -> str:
        """Short hash of the effective config (logged with every run)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:12]


def _type_name(t: Any) -> str:
    return getattr(t, "__name__", str(t))


def _coerce(key: str, value: Any, f: dataclasses.Field, ftype: Any) -> Any:
    coerce = _COERCERS.get(ftype)
    if coerce is None:
        raise ConfigError(f"{key}: unsupported type")
    return coerce(key, value, f.metadata, ftype)


def _coerce_bool(key: str, value: Any, meta: Any, ftype: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key}: {value!r} is not allowed; allowed: true, false")
    return value


def _coerce_number(key: str, value: Any, meta: Any, ftype: Any) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{key}: {value!r} is not a number ({_type_name(ftype)})")
    if not math.isfinite(value):  # NaN passes every range check: refuse it by name
        raise ConfigError(f"{key}: {value!r} is not a finite number")
    if ftype is int and float(value) != int(value):
        raise ConfigError(f"{key}: {value!r} must be a whole number")
    value = ftype(value)
    lo, hi = meta.get("lo"), meta.get("hi")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ConfigError(f"{key}: {value!r} is out of range; allowed: {lo} to {hi}")
    return value


def _coerce_str(key: str, value: Any, meta: Any, ftype: Any) -> str:
    if not isinstance(value, str):
        value = str(value) if isinstance(value, (int, float)) and not meta.get("choices") else value
    if not isinstance(value, str):
        raise ConfigError(f"{key}: {value!r} is not a string")
    choices = meta.get("choices")
    if choices and value not in choices:
        raise ConfigError(f"{key}: {value!r} is not allowed; allowed: {', '.join(choices)}")
    return value


def _coerce_color(key: str, value: Any, meta: Any, ftype: Any) -> list:
    if (not isinstance(value, (list, tuple)) or len(value) != 3
            or not all(isinstance(c, int) and 0 <= c <= 255 for c in value)):
        raise ConfigError(f"{key}: {value!r} is not allowed; allowed: [B, G, R] with 0-255 integers")
    return list(value)


# the only list-typed keys are colours
_COERCERS = {bool: _coerce_bool, int: _coerce_number, float: _coerce_number, str: _coerce_str,
             list: _coerce_color}


def _build(cls: type, data: Any, prefix: str) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(f"{where}{unknown[0]}: unknown key; allowed keys: {', '.join(fields)}")
    kwargs = {}
    for name, f in fields.items():
        key = f"{prefix}.{name}" if prefix else name
        ftype = hints[name]
        if isinstance(ftype, types.GenericAlias):
            ftype = typing.get_origin(ftype)
        if dataclasses.is_dataclass(ftype):
            kwargs[name] = _build(ftype, data.get(name), key)
        elif name in data:
            kwargs[name] = _coerce(key, data[name], f, ftype)
    return cls(**kwargs)


def from_dict(data: dict | None) -> AnalyzerConfig:
    """Validate a nested dict (missing keys take their defaults); raises ConfigError."""
    return _build(AnalyzerConfig, data or {}, "")


def load_config(source: str | Path | dict | AnalyzerConfig | None = None,
                overrides: dict[str, Any] | None = None) -> AnalyzerConfig:
    """Load and validate a config from a YAML path, a dict, or None (the defaults), then
    apply dotted ``overrides`` such as ``{"routing.tau_epistemic": 0.1}`` (CLI flags)."""
    if isinstance(source, AnalyzerConfig):
        data = source.to_dict()
    elif isinstance(source, dict):
        data = json.loads(json.dumps(source))
    elif source is None:
        data = {}
    else:
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: top level must be a mapping of sections")
        data.pop("calibration", None)  # provenance written by `uar-stream calibrate`
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        section, _, key = dotted.partition(".")
        if not isinstance(data.setdefault(section, {}), dict):
            raise ConfigError(f"{section}: expected a mapping")
        data[section][key] = value
    return from_dict(data)
