"""`uar-stream run`: analyse a video file, image, webcam or stream."""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

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
    p.add_argument("--tau-epistemic", type=float, help="config routing.tau_epistemic (nats)")
    p.add_argument("--tau-aleatoric", type=float, help="config routing.tau_aleatoric (nats)")
    p.add_argument("--face-events", help="config events.faces: every_frame, on_change, every_n, off")
    p.add_argument("--detector", help="config detector.model: full, short")
    p.add_argument("--show", action="store_true",
                   help="show a window with the overlay and FPS (skipped with a warning without a display)")
    p.add_argument("--buffer-policy",
                   help="config source.buffer_policy: auto, wait, drop_oldest, newest_only")
    p.add_argument("--reconnect-attempts", type=int,
                   help="config source.reconnect_attempts (live sources)")
    p.add_argument("--sync", action="store_true",
                   help="no capture/detect threads (config source.pipelined: false)")
    p.add_argument("--no-tracking", action="store_true",
                   help="no face ids, smoothing or hysteresis (config tracking.enabled: false)")
    p.add_argument("--max-frames", type=int, default=0, help="stop after this many frames")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--summary-json", help="also write the end summary as JSON here")


def _cmd_run(a) -> int:
    from uar_stream.pipeline.analyzer import Analyzer
    from uar_stream.config import load_config
    from uar_stream.pipeline.run import run

    cfg = load_config(a.config, {"model.path": a.model, "engine.backend": a.backend,
                                 "routing.tau_epistemic": a.tau_epistemic,
                                 "routing.tau_aleatoric": a.tau_aleatoric,
                                 "events.faces": a.face_events, "detector.model": a.detector,
                                 "source.buffer_policy": a.buffer_policy,
                                 "source.reconnect_attempts": a.reconnect_attempts,
                                 "source.pipelined": False if a.sync else None,
                                 "tracking.enabled": False if a.no_tracking else None})
    if a.output is None and a.events is None and not a.show:
        log.warning("no --output, --events or --show: only the summary will be printed")
    with Analyzer(cfg) as an:
        s = run(an, a.source, a.output, a.events, progress=not a.no_progress and sys.stderr.isatty(),
                show=a.show, max_frames=a.max_frames)
    _print_summary(s, a)
    return 130 if s.interrupted else 0


def _print_summary(s, a) -> None:
    d = s.to_dict()
    routes = ", ".join(f"{k} {v}" for k, v in d["routes"].items())
    labels = ", ".join(f"{k} {v}" for k, v in sorted(d["labels"].items(), key=lambda kv: -kv[1]))
    lines = [
        f"{'interrupted' if s.interrupted else 'done'}: {d['frames']} frames, {d['faces']} faces "
        f"in {d['seconds']:.1f} s ({d['fps']:.1f} fps; latency p50 {d['latency_ms_p50']} ms, "
        f"p95 {d['latency_ms_p95']} ms; dropped {d['dropped_frames']})",
        f"  routes: {routes}",
        f"  labels shown: {labels or '-'}",
    ]
    if a.output:
        lines.append(f"  video:  {a.output}")
    if a.events:
        lines.append(f"  events: {a.events}")
    print("\n".join(lines))
    if a.summary_json:
        Path(a.summary_json).write_text(json.dumps(d, indent=2))
