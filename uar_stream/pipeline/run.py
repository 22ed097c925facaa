"""The run loop behind ``uar-stream run``: a managed stream (``Analyzer.stream``) -> overlay\nvideo + events JSONL + optional window."""
from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from uar_stream.pipeline.analyzer import Analyzer
from uar_stream.pipeline.sinks.events import EventLog
from uar_stream.flow import FaceResult
from uar_stream.pipeline.routing import Route
from uar_stream.pipeline.sinks.video import VideoSink
from uar_stream.pipeline.sources import redact

logger = logging.getLogger("uar_stream")


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
        else:  # on_change: route or label differs from the same face before (its track, or
            chosen = []  # without tracking the face at its place)
            by_id = {p.track_id: p for p in self._prev if p.track_id is not None}
            for i, f in enumerate(faces):
                if f.track_id is not None:
                    best = by_id.get(f.track_id)
                else:
                    best = max(self._prev, key=lambda p: _iou(p.box, f.box), default=None)
                    best = best if best is not None and _iou(best.box, f.box) >= 0.3 else None
                if best is None or best.route != f.route or best.label != f.label:
                    chosen.append(i)
        self._prev = faces
        return chosen


class _StopFlag:
    """Ctrl-C / SIGTERM set a flag (and call ``on_stop``); the loop finishes the frame and
    finalises outputs. A second Ctrl-C gives up at once."""

    def __init__(self, on_stop=None) -> None:
        self.stop = False
        self._on_stop = on_stop
        self._old: dict = {}

    def __enter__(self) -> "_StopFlag":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, _frame) -> None:
        if self.stop:
            raise KeyboardInterrupt
        self.stop = True
        if self._on_stop is not None:
            self._on_stop()

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


class _Fps:
    """Frames per second shown in the overlay: an EMA of the inverse frame interval."""

    def __init__(self) -> None:
        self.value: float | None = None
        self._last = time.perf_counter()

    def tick(self) -> float | None:
        now = time.perf_counter()
        dt, self._last = now - self._last, now
        if dt > 0:
            self.value = 1 / dt if self.value is None else 0.9 * self.value + 0.1 / dt
        return self.value


def run(analyzer: Analyzer, source: str, output: str | Path | None = None,
        events: str | Path | None = None, progress: bool = True, show: bool = False,
        max_frames: int = 0, pipelined: bool | None = None,
        tracking: bool | None = None) -> RunSummary:
    """Analyse a whole source. Outputs are finalised however the run ends (end of input,
    Ctrl-C, SIGTERM, a stream that cannot be restored, an error): the video is closed and
    the last event is ``run_ended``. Errors are raised after that."""
    from tqdm import tqdm

    cfg = analyzer.config
    stream = analyzer.stream(source, pipelined=pipelined, tracking=tracking)
    try:
        log = EventLog(events)
        sink = VideoSink(output, stream.fps, cfg.output.codec) if output else None
    except BaseException:
        stream.close()
        raise
    summary = RunSummary(source=redact(source))
    policy = FaceEventPolicy(cfg.events.faces, cfg.events.every_n)
    log.emit("run_started", source=redact(source), live=stream.is_live, width=stream.size[0],
             height=stream.size[1], fps=round(stream.fps, 3), frame_count=stream.frame_count,
             buffer_policy=stream.policy, pipelined=stream.pipelined,
             tracking=stream.tracker is not None,
             config_hash=cfg.digest(), model_id=analyzer.model_id,
             model=str(analyzer.model_dir), backend=analyzer.engine.name,
             thresholds={"tau_epistemic": cfg.routing.tau_epistemic,
                         "tau_aleatoric": cfg.routing.tau_aleatoric})
    bar = tqdm(total=stream.frame_count or None, unit="frame", disable=not progress,
               file=sys.stderr, dynamic_ncols=True)
    if show:
        show = _display_available()
    fps = _Fps()
    out_size: tuple[int, int] | None = None
    t0 = time.perf_counter()
    error: BaseException | None = None
    flag = _StopFlag(on_stop=stream.stop)
    try:
        with flag:
            for res in stream:
                _log_events(log, res.events)
                frame, results = res.frame, res.faces
                summary.frames += 1
                summary.faces += len(results)
                for r in results:
                    summary.routes[r.route.value] += 1
                    if r.route is not Route.OUT_OF_DISTRIBUTION:
                        summary.labels[r.label] = summary.labels.get(r.label, 0) + 1
                for i in policy.select(frame.index, results):
                    log.emit("face", frame=frame.index, t=round(frame.timestamp_s, 3), face=i,
                             **results[i].to_dict(probs=cfg.events.probs))
                shown = fps.tick()
                if sink is not None or show:
                    drawn = analyzer.draw(frame.image, results, shown)
                    if sink is not None:
                        # A restored stream may come back at another size: the video keeps its own.
                        out_size = out_size or (drawn.shape[1], drawn.shape[0])
                        if (drawn.shape[1], drawn.shape[0]) != out_size:
                            drawn = cv2.resize(drawn, out_size, interpolation=cv2.INTER_AREA)
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
        stream.close()
        summary.seconds = time.perf_counter() - t0
        summary.dropped_frames = stream.dropped
        lat = stream.latencies_ms
        if lat:
            summary.latency_ms_p50 = round(float(np.percentile(lat, 50)), 2)
            summary.latency_ms_p95 = round(float(np.percentile(lat, 95)), 2)
        try:
            _log_events(log, stream.drain_events())
            if sink is not None:
                sink.close()
        finally:
            extra = {"error": str(error)} if error is not None else {}
            log.emit("run_ended", **summary.to_dict(), reconnects=stream.reader.reconnects,
                     tracks=stream.tracker.total_tracks if stream.tracker else None, **extra)
            log.close()
            if show:
                _close_window()
    if error is not None:
        raise error
    return summary


def _log_events(log: EventLog, events: list[dict]) -> None:
    for ev in events:
        ev = dict(ev)
        log.emit(ev.pop("event"), **ev)


def _display_available() -> bool:
    """--show needs a display and a GUI-enabled OpenCV; warn once and go on without."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        logger.warning("--show: no display (DISPLAY is not set); running without a window")
        return False
    return True


def _show(frame: np.ndarray) -> bool:
    """Show a frame in a window; False (stop showing) when the window cannot open or 'q'."""
    try:
        cv2.imshow("uar-stream", frame)
        return (cv2.waitKey(1) & 0xFF) != ord("q")
    except cv2.error as e:
        logger.warning("--show: cannot open a window (%s); running without one",
                    str(e).strip().splitlines()[-1][:120])
        return False


def _close_window() -> None:
    try:
        cv2.destroyAllWindows()
    except cv2.error:
        pass
