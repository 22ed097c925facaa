"""`uar-stream run`: analyse a video file, image, webcam or stream."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

from uar_stream.cli.options import number
from uar_stream.errors import ConfigError

log = logging.getLogger("uar_stream")


def register(sub) -> dict:
    """Add ``run`` to ``sub``; return {name: handler(args) -> exit code}."""
    _add_run(sub)
    return {"run": _cmd_run}


def _add_run(sub) -> None:
    p = sub.add_parser("run", help="analyse a video file, image, webcam or stream")
    p.add_argument("--source", required=True,
                   help="video/image path, webcam index (0) or stream URL (rtsp://, http://)")
    p.add_argument("--output", help="annotated video (.mp4/.avi) or image (.jpg/.png) to write")
    p.add_argument("--events", help="JSONL event log to write")
    p.add_argument("--config", help="YAML config (default: built-in defaults = configs/default.yaml)")
    p.add_argument("--model", help="model directory (config model.path)")
    p.add_argument("--backend", help="engine backend (config engine.backend)")
    p.add_argument("--tau-epistemic", type=number(float), help="config routing.tau_epistemic (nats)")
    p.add_argument("--tau-aleatoric", type=number(float), help="config routing.tau_aleatoric (nats)")
    p.add_argument("--face-events", help="config events.faces: every_frame, on_change, every_n, off")
    p.add_argument("--detector", help="config detector.model: full, short")
    p.add_argument("--show", action="store_true",
                   help="show a window with the overlay and FPS (skipped with a warning without a display)")
    p.add_argument("--buffer-policy",
                   help="config source.buffer_policy: auto, wait, drop_oldest, newest_only")
    p.add_argument("--reconnect-attempts", type=number(int),
                   help="config source.reconnect_attempts (live sources)")
    p.add_argument("--sync", action="store_true",
                   help="no capture/detect threads (config source.pipelined: false)")
    p.add_argument("--no-tracking", action="store_true",
                   help="no face ids, smoothing or hysteresis (config tracking.enabled: false)")
    p.add_argument("--max-frames", type=number(int, 0, allowed="0 (no limit) or more"), default=0,
                   help="stop after this many frames (0: no limit)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--summary-json", help="also write the end summary as JSON here")


def _cmd_run(a) -> int:
    from uar_stream.config import load_config
    from uar_stream.pipeline.analyzer import Analyzer
    from uar_stream.pipeline.run import run
    from uar_stream.pipeline.sinks import outputs_for

    cfg = load_config(a.config, {"model.path": a.model, "engine.backend": a.backend,
                                 "routing.tau_epistemic": a.tau_epistemic,
                                 "routing.tau_aleatoric": a.tau_aleatoric,
                                 "events.faces": a.face_events, "detector.model": a.detector,
                                 "source.buffer_policy": a.buffer_policy,
                                 "source.reconnect_attempts": a.reconnect_attempts,
                                 "source.pipelined": False if a.sync else None,
                                 "tracking.enabled": False if a.no_tracking else None})
    check_paths(a)
    if a.output is None and a.events is None and not a.show:
        log.warning("no --output, --events or --show: only the summary will be printed")
    sinks = outputs_for(cfg, output=a.output, events=a.events, show=a.show,
                        summary_json=a.summary_json)
    with Analyzer(cfg) as an:
        s = run(an, a.source, sinks, progress=not a.no_progress and sys.stderr.isatty(),
                max_frames=a.max_frames)
    return 130 if s.interrupted else 0


def check_paths(a) -> None:
    """The output files must differ from each other and from the source (a run must never
    write over its own input or interleave two outputs in one file)."""
    named = [(f"--{k.replace('_', '-')}", getattr(a, k)) for k in ("output", "events", "summary_json")]
    seen: dict[Path, str] = {}
    src = Path(a.source).expanduser()
    src_key = src.resolve() if src.exists() else None
    for flag, value in named:
        if not value:
            continue
        if value.strip() == "":
            raise ConfigError(f"{flag}: an empty path is not allowed")
        key = Path(value).expanduser().resolve()
        if key == src_key:
            raise ConfigError(f"{flag} {value}: is the source; refusing to write over the input")
        if key in seen:
            raise ConfigError(f"{flag} and {seen[key]} name the same file {value}")
        seen[key] = flag
