"""``CAMERAS.yaml``: the analyzer config plus ``serve:`` (batcher, view) and ``cameras:``
(and ``ray:``, which only ``serve --ray`` reads: the plain server ignores it).

::

    model: {path: engines/default}      # any analyzer section (configs/default.yaml)
    serve: {max_batch: 16, batch_timeout_ms: 5}
    cameras:
      - id: door                         # letters, digits, - and _ (it is part of URLs)
        source: rtsp://user:pass@10.0.0.5/stream
        events: out/door.jsonl           # optional
        record: out/door.mp4             # optional annotated recording
        enabled: true
        analyzer:                        # this camera's own analyzer sections (not model / engine)
          routing: {tau_epistemic: 0.2}
          source: {reconnect_attempts: 100}

Validated on load like the other configs: every error is one line that names the camera
(``cameras[1] (id door): ...``), the key and what is allowed.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml

from uar_stream.config import AnalyzerConfig, from_dict
from uar_stream.errors import ConfigError
from uar_stream.pipeline.sources import is_live_spec

log = logging.getLogger("uar_stream.serve")

#: Sections a camera may not override: one engine (one model) serves every camera.
SHARED_SECTIONS = ("model", "engine")
#: Top-level keys beside the analyzer sections (``ray:`` is read by ``serve --ray`` only).
TOP_KEYS = ("serve", "cameras", "ray")
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


@dataclass
class ServeOptions:
    """``serve:``: the cross-stream batcher and the live view."""

    #: The batcher fires at this many face crops ...
    max_batch: int = 16
    #: ... or this long after the first crop of a batch arrived (or when every camera waits).
    batch_timeout_ms: float = 5.0
    jpeg_quality: int = 80  # MJPEG and snapshot images
    view_fps: float = 15.0  # at most this many MJPEG images per second per viewer


_SERVE_RANGES = {"max_batch": (1, 1024), "batch_timeout_ms": (0.0, 1000.0), "jpeg_quality": (10, 100),
                 "view_fps": (0.5, 120.0)}


@dataclass
class CameraConfig:
    """One camera. ``overrides``: its ``analyzer:`` sections (a nested dict), on top of the base.
    ``loop``: a file starts again at its end; ``realtime``: a file is read at its own
    frame rate, newest frame wins, like a live camera (both ignored for live sources)."""

    id: str
    source: str
    record: str | None = None
    events: str | None = None
    enabled: bool = True
    loop: bool = False
    realtime: bool = False
    overrides: dict = field(default_factory=dict)

    @property
    def is_live(self) -> bool:
        """True for webcams and stream URLs."""
        return is_live_spec(self.source)


@dataclass
class ServeConfig:
    """A whole ``CAMERAS.yaml``: ``base`` (the analyzer config as a validated dict, the
    start of every camera's config), ``serve`` and the cameras in file order."""

    base: dict
    serve: ServeOptions
    cameras: list[CameraConfig]

    def analyzer_config(self, camera: CameraConfig | None = None) -> AnalyzerConfig:
        """The analyzer config of ``camera`` (the base with its overrides), or the base."""
        data = json.loads(json.dumps(self.base))
        for section, values in (camera.overrides if camera else {}).items():
            data.setdefault(section, {}).update(values)
        return from_dict(data)


def load_serve_config(source: str | Path | dict) -> ServeConfig:
    """Read and validate a ``CAMERAS.yaml`` (a path or its parsed dict); raises ConfigError."""
    data = read_config(source)
    if "ray" in data:
        data.pop("ray")
        log.debug("ray: ignored (it is read only by `uar-stream serve --ray`, docs/cluster.md)")
    cams = data.pop("cameras", None)
    serve = _serve_options(data.pop("serve", None))
    sections = [f.name for f in dataclasses.fields(AnalyzerConfig)]
    unknown = sorted(set(data) - set(sections))
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown key; allowed keys: {', '.join([*sections, *TOP_KEYS])}")
    base = from_dict(data).to_dict()  # bad analyzer keys fail here
    if not isinstance(cams, list) or not cams:
        raise ConfigError("cameras: expected a list of cameras ({id, source, ...}), got "
                          f"{type(cams).__name__ if cams is not None else 'nothing'}")
    cfg = ServeConfig(base, serve, [])
    for i, raw in enumerate(cams):
        cfg.cameras.append(parse_camera(raw, cfg, where=f"cameras[{i}]"))
    ids = [c.id for c in cfg.cameras]
    dup = next((c for c in ids if ids.count(c) > 1), None)
    if dup is not None:
        raise ConfigError(f"cameras: duplicate id {dup!r}; every camera needs its own id")
    return cfg


def parse_camera(raw: Any, config: ServeConfig, where: str | None = None) -> CameraConfig:
    """Validate one camera mapping (from the file or ``POST /api/streams``) against
    ``config``'s base; raises ConfigError naming the camera and the key."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping with id and source, got {type(raw).__name__}")
    cid = raw.get("id")
    if where is None:
        where, label = "camera", f"camera {cid}" if isinstance(cid, str) else "camera"
    else:
        label = f"{where} (id {cid})" if isinstance(cid, str) else where
    if not isinstance(cid, str) or not _ID.match(cid):
        raise ConfigError(f"{label}: id: {cid!r} is not allowed; allowed: 1-64 letters, digits, - and _")
    known = [f.name for f in dataclasses.fields(CameraConfig) if f.name != "overrides"] + ["analyzer"]
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ConfigError(f"{label}: {unknown[0]}: unknown key; allowed keys: {', '.join(known)}")
    cam = CameraConfig(**_camera_fields(raw, label), overrides=_overrides(raw.get("analyzer"), label))
    try:
        config.analyzer_config(cam)
    except ConfigError as e:
        raise ConfigError(f"{label}: {e}") from None
    return cam


def _overrides(raw: Any, label: str) -> dict:
    """``analyzer:`` of a camera: analyzer sections (its own ``source:`` timeouts, ``events:``
    policy, ``routing:`` thresholds, ...); not model / engine, which every camera shares."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{label}: analyzer: expected a mapping of analyzer sections, got "
                          f"{type(raw).__name__}")
    sections = [s for s in AnalyzerConfig.__dataclass_fields__ if s not in SHARED_SECTIONS]
    for key, value in raw.items():
        if key in SHARED_SECTIONS:
            raise ConfigError(f"{label}: analyzer.{key}: cannot be set per camera (one engine serves "
                              "every camera); set it at the top level")
        if key not in sections:
            raise ConfigError(f"{label}: analyzer.{key}: unknown section; allowed: {', '.join(sections)}")
        if not isinstance(value, dict):
            raise ConfigError(f"{label}: analyzer.{key}: expected a mapping, got {type(value).__name__}")
    return json.loads(json.dumps(raw))


def _camera_fields(plain: dict, label: str) -> dict:
    out: dict[str, Any] = {"id": plain["id"]}
    source = plain.get("source")
    if isinstance(source, int) and not isinstance(source, bool):
        source = str(source)  # a webcam index
    if not isinstance(source, str) or not source.strip():
        raise ConfigError(f"{label}: source: expected a video path, webcam index or stream URL, "
                          f"got {source!r}")
    if not (source.isdigit() or _URL.match(source)):
        path = Path(source).expanduser()
        if not path.is_file():
            raise ConfigError(f"{label}: source: file not found: {path}")
    out["source"] = source
    for key in ("record", "events"):
        if plain.get(key) is not None:
            if not isinstance(plain[key], str):
                raise ConfigError(f"{label}: {key}: expected a file path, got {plain[key]!r}")
            out[key] = plain[key]
    for key in ("enabled", "loop", "realtime"):
        if key in plain:
            if not isinstance(plain[key], bool):
                raise ConfigError(f"{label}: {key}: {plain[key]!r} is not allowed; allowed: true, false")
            out[key] = plain[key]
    return out


def check_key(where: str, key: str, allowed: Sequence[str]) -> None:
    """Raise a one-line ConfigError (``where.key: unknown key; allowed keys: ...``) unless
    ``key`` is one of ``allowed``."""
    if key not in allowed:
        raise ConfigError(f"{where}.{key}: unknown key; allowed keys: {', '.join(allowed)}")


def check_number(key: str, value: Any, lo: Any, hi: Any) -> Any:
    """``value`` as ``lo``'s type (int: a whole number) if it is a number from ``lo`` to
    ``hi``; a one-line ConfigError naming ``key`` and the allowed range otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise ConfigError(f"{key}: {value!r} is not allowed; allowed: {lo} to {hi}")
    if isinstance(lo, int) and value != int(value):
        raise ConfigError(f"{key}: {value!r} must be a whole number")
    return type(lo)(value)


def _serve_options(raw: Any) -> ServeOptions:
    if raw is None:
        return ServeOptions()
    if not isinstance(raw, dict):
        raise ConfigError(f"serve: expected a mapping, got {type(raw).__name__}")
    kwargs = {}
    for key, value in raw.items():
        check_key("serve", key, list(_SERVE_RANGES))
        kwargs[key] = check_number(f"serve.{key}", value, *_SERVE_RANGES[key])
    return ServeOptions(**kwargs)


def read_config(source: str | Path | dict) -> dict:
    """A ``CAMERAS.yaml`` (a path, or its parsed dict: copied) as a dict, without the
    ``calibration:`` provenance; a one-line ConfigError if it is missing or not a mapping."""
    if isinstance(source, dict):
        return json.loads(json.dumps(source))
    path = Path(source)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping (analyzer sections, serve, cameras)")
    data.pop("calibration", None)  # provenance written by `uar-stream calibrate`
    return data
