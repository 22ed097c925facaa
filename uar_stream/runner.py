"""The run loop behind ``uar-stream run``: source -> analyzer -> overlay video + events."""
from __future__ import annotations

import signal
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .analyzer import Analyzer
from .events import EventLog
from .results import FaceResult
from .routing import Route
from .sinks import VideoSink
from .sources import open_source, redact


@dataclass
class RunSummary:
    source: str
    frames: int = 0
    faces: int = 0
    routes: dict = field(default_factory=lambda: {r.value: 0 for r in Route})
    labels: dict = field(default_factory=dict)
    dropped_frames: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    latency_ms_p50: float | None = None
    latency_ms_p95: float | None = None

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        return {"source": self.source, "frames": self.frames, "faces": self.faces,
                "routes": self.routes, "labels": self.labels, "fps": round(self.fps, 2),
                "dropped_frames": self.dropped_frames, "seconds": round(self.seconds, 2),
                "interrupted": self.interrupted, "latency_ms_p50": self.latency_ms_p50,
                "latency_ms_p95": self.latency_ms_p95}


def _iou(a, b) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


class FaceEventPolicy:
    """Decides which face results become events (config ``events.faces``)."""

    def __init__(self, mode: str, every_n: int):
        self.mode, self.every_n = mode, every_n
        self._prev: list[FaceResult] = []

    def select(self, frame_index: int, faces: list[FaceResult]) -> list[int]:
        if self.mode == "off":
            chosen = []
        elif self.mode == "every_frame":
            chosen = list(range(len(faces)))
        elif self.mode == "every_n":
            chosen = list(range(len(faces))) if frame_index % self.every_n == 0 else []
        else:  # on_change: a face whose route or label differs from the face at its place before
            chosen = []
            for i, f in enumerate(faces):
                best = max(self._prev, key=lambda p: _iou(p.box, f.box), default=None)
                if (best is None or _iou(best.box, f.box) < 0.3 or best.route != f.route
                        or best.label != f.label):
                    chosen.append(i)
        self._prev = faces
        return chosen


class _StopFlag:
    """Ctrl-C / SIGTERM set a flag; the loop finishes the frame and finalises outputs."""

    def __init__(self) -> None:
        self.stop = False
        self._old: dict = {}

    def __enter__(self) -> "_StopFlag":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, _frame) -> None:
        if self.stop:  # second Ctrl-C: give up at once
            raise KeyboardInterrupt
        self.stop = True

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def run(analyzer: Analyzer, source: str, output: str | Path | None = None,
        events: str | Path | None = None, progress: bool = True, show: bool = False,
        max_frames: int = 0) -> RunSummary:
    """Analyse a whole source. Outputs are finalised however the run ends (end of input,
    Ctrl-C, SIGTERM, an error): the video is closed and the last event is ``run_ended``."""
    from tqdm import tqdm

    cfg = analyzer.config
    src = open_source(source)
    log = EventLog(events)
    sink = VideoSink(output, src.fps, cfg.output.codec) if output else None
    summary = RunSummary(source=redact(source))
    policy = FaceEventPolicy(cfg.events.faces, cfg.events.every_n)
    log.emit("run_started", source=redact(source), live=src.is_live, width=src.size[0],
             height=src.size[1], fps=round(src.fps, 3), frame_count=src.frame_count,
             config_hash=cfg.digest(), model_id=analyzer.model_id,
             model=str(analyzer.model_dir), backend=analyzer.engine.name,
             thresholds={"tau_epistemic": cfg.routing.tau_epistemic,
                         "tau_aleatoric": cfg.routing.tau_aleatoric})
    bar = tqdm(total=src.frame_count or None, unit="frame", disable=not progress,
               file=sys.stderr, dynamic_ncols=True)
    latencies: list[float] = []
    t0 = time.perf_counter()
    fps_ema: float | None = None
    last = t0
    error: BaseException | None = None
    try:
        with _StopFlag() as flag:
            while not flag.stop:
                frame = src.read()
                if frame is None:
                    break
                results = analyzer.analyze(frame.image)
                now = time.perf_counter()
                latencies.append((now - frame.captured_at) * 1000)
                dt = now - last
                last = now
                fps_ema = (1 / dt if fps_ema is None else 0.9 * fps_ema + 0.1 / max(dt, 1e-6)) if dt > 0 else fps_ema
                summary.frames += 1
                summary.faces += len(results)
                for r in results:
                    summary.routes[r.route.value] += 1
                    if r.route is not Route.OUT_OF_DISTRIBUTION:
                        summary.labels[r.label] = summary.labels.get(r.label, 0) + 1
                for i in policy.select(frame.index, results):
                    log.emit("face", frame=frame.index, t=round(frame.timestamp_s, 3), face=i,
                             **results[i].to_dict(probs=cfg.events.probs))
                if sink is not None or show:
                    drawn = analyzer.draw(frame.image, results, fps_ema)
                    if sink is not None:
                        sink.write(drawn)
                    if show:
                        show = _show(drawn)
                bar.update(1)
                if max_frames and summary.frames >= max_frames:
                    break
            summary.interrupted = flag.stop
    except KeyboardInterrupt:
        summary.interrupted = True
    except BaseException as e:  # finalise outputs, then let the CLI report it
        error = e
    finally:
        bar.close()
        summary.seconds = time.perf_counter() - t0
        if latencies:
            summary.latency_ms_p50 = round(float(np.percentile(latencies, 50)), 2)
            summary.latency_ms_p95 = round(float(np.percentile(latencies, 95)), 2)
        src.close()
        try:
            if sink is not None:
                sink.close()
        finally:
            extra = {"error": str(error)} if error is not None else {}
            log.emit("run_ended", **summary.to_dict(), **extra)
            log.close()
    if error is not None:
        raise error
    return summary


def _show(frame: np.ndarray) -> bool:
    """Show a frame in a window; False (stop showing) when there is no display or 'q'."""
    import cv2

    try:
        cv2.imshow("uar-stream", frame)
        return (cv2.waitKey(1) & 0xFF) != ord("q")
    except cv2.error:
        return False
