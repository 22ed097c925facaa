"""Command line: ``uar-stream run | train | ...``. Errors a user can cause print as one line."""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
from pathlib import Path

from uar_stream.errors import UarError

log = logging.getLogger("uar_stream")


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


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train the ensemble (or LDL baseline) on FER+ data")
    p.add_argument("--data", required=True, help="training .npz in the FER+ layout")
    p.add_argument("--test", help="evaluation .npz: leaked images removed, metrics reported")
    p.add_argument("--out", required=True, help="model directory to write")
    p.add_argument("--members", type=int, default=5)
    p.add_argument("--epochs", type=int, help="default: 24 (cnn), 10 (dinov2)")
    p.add_argument("--loss", default="soft", help="soft (vote distribution) or majority")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, help="default: 128 (cnn), 64 (dinov2)")
    p.add_argument("--lr", type=float, help="peak learning rate; default: 0.1 (cnn, SGD), "
                   "1e-4 (dinov2, AdamW; lower layers get less)")
    p.add_argument("--backbone", default="cnn", choices=("cnn", "dinov2"), help="cnn (default) or dinov2")
    p.add_argument("--dinov2-weights", help="local facebook/dinov2-small safetensors (dinov2 backbone)")
    p.add_argument("--image-size", type=int,
                   help="dinov2: side the 48x48 crop is resized to, a multiple of 14 (default 224)")
    p.add_argument("--max-steps", type=int, default=0,
                   help="dinov2: stop each member after this many steps (smoke tests)")
    p.add_argument("--work-dir", help="checkpoints (default: OUT.work); rerun to resume")
    p.add_argument("--quick", action="store_true", help="small subset, 1 epoch, 2 members (CI smoke)")


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


def _cmd_train(a) -> int:
    from uar_stream.training.trainer import TrainConfig, print_summary, train_ensemble

    if a.backbone != "cnn":
        from uar_stream.training.dinov2 import train_dinov2_cli
        return train_dinov2_cli(a)
    # Unset flags take the CNN's defaults (DINOv2 has its own).
    a.epochs = 24 if a.epochs is None else a.epochs
    a.batch_size = 128 if a.batch_size is None else a.batch_size
    a.lr = 0.1 if a.lr is None else a.lr
    if a.quick:
        cfg = TrainConfig(members=min(a.members, 2), epochs=1, loss=a.loss, seed=a.seed,
                          batch_size=a.batch_size, lr=a.lr, limit=1024)
    else:
        cfg = TrainConfig(members=a.members, epochs=a.epochs, loss=a.loss, seed=a.seed,
                          batch_size=a.batch_size, lr=a.lr)
    print_summary(train_ensemble(a.data, a.test, a.out, cfg, a.work_dir), a.out)
    return 0


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = argparse.ArgumentParser(prog="uar-stream", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="cmd", required=True)
    _add_run(sub)
    _add_train(sub)
    handlers = {"run": _cmd_run, "train": _cmd_train}
    for module in _COMMAND_MODULES:
        handlers.update(importlib.import_module(module, __package__).register(sub))
    a = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if a.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return handlers[a.cmd](a)
    except UarError as e:
        print(f"uar-stream {a.cmd}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"uar-stream {a.cmd}: interrupted", file=sys.stderr)
        return 130


#: Modules that add subcommands: each has ``register(subparsers) -> {name: handler}``;
#: a handler takes the parsed args and returns the exit code.
_COMMAND_MODULES = (".evaluate", ".engines")

if __name__ == "__main__":
    sys.exit(main())
