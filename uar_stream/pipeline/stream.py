"""A managed stream: source -> (capture thread, detect thread) -> classify -> tracker.

``FrameStream`` is what ``Analyzer.stream(source)`` returns: iterate it for one
:class:`StreamResult` per analysed frame; ``close()`` (or leaving a ``with`` block, or
breaking out of the loop) stops the threads and releases the camera.

Pipelined (``source.pipelined: true``), three threads share the work::

    reader thread   source.read() -> raw buffer (policy: wait / newest_only / drop_oldest)
    detect thread   raw -> Analyzer.detect (detect + align) -> ready buffer
    caller's thread ready -> Analyzer.classify (one engine call for the ready frames) -> tracker

so detection of frame t+1 overlaps inference on frame t (mediapipe, OpenCV and torch all
release the GIL). Synchronous mode does the same steps one after another on the caller's
thread (the baseline that ``tools/bench_live.py`` compares against).
"""
from __future__ import annotations

import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np

from uar_stream.pipeline.capture import EndOfStream, FrameBuffer, LinkEvent, ReconnectingReader, capture_loop, resolve_policy
from uar_stream.config import SourceConfig
from uar_stream.flow import FaceResult
from uar_stream.pipeline.sources import Frame, redact

if TYPE_CHECKING:
    from uar_stream.pipeline.analyzer import Analyzer, FaceBatch


@dataclass
class StreamResult:
    """One analysed frame. ``events``: every event since the previous result, in order
    (stream_lost / stream_restored, track_started / route_changed / track_ended), as dicts
    with an ``event`` key. ``latency_ms``: capture to result."""

    frame: Frame
    faces: list[FaceResult]
    events: list[dict] = field(default_factory=list)
    latency_ms: float = 0.0

    @property
    def image(self) -> np.ndarray:
        return self.frame.image

    @property
    def index(self) -> int:
        return self.frame.index


class FrameStream:
    """Iterate for :class:`StreamResult`; see the module docstring. Opening the source
    happens here, so a bad source raises :class:`~uar_stream.errors.SourceError` at once."""

    def __init__(self, analyzer: "Analyzer", source, *, pipelined: bool | None = None,
                 tracking: bool | None = None, config: SourceConfig | None = None):
        self.analyzer = analyzer
        self.config = config or analyzer.config.source
        self.pipelined = self.config.pipelined if pipelined is None else pipelined
        self._stop = threading.Event()
        self.reader = ReconnectingReader(str(source), self.config, self._stop)
        self.source = redact(str(source))
        self.is_live = self.reader.is_live
        self.fps, self.size, self.frame_count = self.reader.fps, self.reader.size, self.reader.frame_count
        self.policy = resolve_policy(self.config.buffer_policy, self.is_live)
        use_tracking = analyzer.config.tracking.enabled if tracking is None else tracking
        self.tracker = analyzer.new_tracker() if use_tracking else None
        self.latencies_ms: list[float] = []
        self.frames = 0
        self._pending: list[dict] = []
        self._raw: FrameBuffer | None = None
        self._ready: FrameBuffer | None = None
        self._threads: list[threading.Thread] = []
        self._started = False
        self._closed = False

    # -- public ---------------------------------------------------------------------------
    @property
    def dropped(self) -> int:
        """Frames read from the source but never analysed (live buffer policies)."""
        return sum(b.dropped for b in (self._raw, self._ready) if b is not None)

    def stop(self) -> None:
        """Ask the stream to end; safe from any thread and from a signal handler."""
        self._stop.set()

    def drain_events(self) -> list[dict]:
        """Events not yet handed out with a result (e.g. stream_lost before a failure,
        track_ended at the end). Call after the loop."""
        out, self._pending = self._pending, []
        return out

    def __iter__(self) -> Iterator[StreamResult]:
        self._start()
        try:
            while not self._stop.is_set():
                items = self._next_items()
                frames: list[tuple[Frame, "FaceBatch"]] = []
                for item in items + [None]:
                    if isinstance(item, tuple):
                        frames.append(item)
                        continue
                    if frames:  # classify what came before a control item in one call
                        yield from self._classify(frames)
                        frames = []
                    if isinstance(item, LinkEvent):
                        self._pending.append(item.to_event())
                        if item.kind == "stream_lost" and self.tracker is not None:
                            self._pending.extend(self.tracker.finish("stream_lost"))
                    elif isinstance(item, EndOfStream):
                        if item.error is not None:
                            raise item.error
                        return
        finally:
            self.close()

    def close(self) -> None:
        """Stop the threads, release the source; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        for b in (self._raw, self._ready):
            if b is not None:
                b.close()
        # A reader blocked in a dead stream's read returns within the read timeout.
        for t in self._threads:
            t.join(timeout=self.config.read_timeout_s + 2.0)
        if not self.pipelined or not self._started:
            self.reader.close()
        if self.tracker is not None:
            self._pending.extend(self.tracker.finish("end_of_stream"))

    def __enter__(self) -> "FrameStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- internals ------------------------------------------------------------------------
    def _start(self) -> None:
        if self._started:
            raise RuntimeError("a FrameStream can be iterated once")
        self._started = True
        self.analyzer._register_stream(self)
        if not self.pipelined:
            self.analyzer._detector()  # create it now: its start-up is not frame latency
            return
        c = self.config
        self._raw = FrameBuffer(self.policy, c.buffer_size)
        # Files: let a few detected frames queue so one engine call can take them all;
        # live: one, so a detected frame never waits behind older ones.
        self._ready = FrameBuffer("wait", c.batch_frames if self.policy == "wait" else 1)
        self._detector_ready = threading.Event()
        self._threads = [
            threading.Thread(target=self._detect_loop, name="uar-detect", daemon=True),
            threading.Thread(target=capture_loop, args=(self.reader, self._raw),
                             name="uar-capture", daemon=True),
        ]
        self._threads[0].start()
        # Read the first frame only once the detector exists (its start-up takes up to
        # seconds and is not frame latency; a live source would drop frames meanwhile).
        self._detector_ready.wait(timeout=120)
        self._threads[1].start()

    def _detect_loop(self) -> None:
        assert self._raw is not None and self._ready is not None
        try:
            self.analyzer._detector()
            self._detector_ready.set()
            while not self._stop.is_set():
                ok, item = self._raw.get(0.1)
                if not ok:
                    continue
                if isinstance(item, Frame):
                    if not self._ready.put((item, self.analyzer.detect(item.image))):
                        break
                    continue
                self._ready.put(item, is_frame=False)
                if isinstance(item, EndOfStream):
                    break
        except BaseException as e:  # noqa: BLE001 - the consumer raises it
            self._ready.put(EndOfStream(e), is_frame=False)
        finally:
            self._detector_ready.set()
            self.analyzer.release_thread_detector()

    def _next_items(self) -> list:
        if not self.pipelined:
            item = self.reader.next()
            if item is None:
                return [EndOfStream()]
            if isinstance(item, Frame):
                return [(item, self.analyzer.detect(item.image))]
            return [item]
        assert self._ready is not None
        ok, item = self._ready.get(0.1)
        if not ok:
            return []
        return [item] + self._ready.get_ready(self.config.batch_frames - 1)

    def _classify(self, frames: list) -> Iterator[StreamResult]:
        all_faces = self.analyzer.classify([b for _, b in frames])
        for (frame, _), faces in zip(frames, all_faces):
            events, self._pending = self._pending, []
            if self.tracker is not None:
                faces, track_events = self.tracker.update(faces, frame.index, frame.timestamp_s,
                                                          frame.image)
                events.extend(track_events)
            latency = (time.perf_counter() - frame.captured_at) * 1000.0
            self.latencies_ms.append(latency)
            self.frames += 1
            yield StreamResult(frame, faces, events, latency)


class StreamHandle:
    """A stream running on a background thread, calling ``on_result(result)`` per frame.

    ``stop()`` ends it; ``join()`` waits; ``error`` holds what ended it abnormally. Events
    left at the end (track_ended, a stream_lost before a failure) go to ``on_events``.
    """

    def __init__(self, stream: FrameStream, on_result: Callable[[StreamResult], None],
                 on_events: Callable[[list[dict]], None] | None = None):
        self.stream = stream
        self.error: BaseException | None = None
        self._on_result, self._on_events = on_result, on_events
        self._thread = threading.Thread(target=self._run, name="uar-stream", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for r in self.stream:
                self._on_result(r)
        except BaseException as e:  # noqa: BLE001 - kept for the app to inspect
            self.error = e
        finally:
            self.stream.close()
            rest = self.stream.drain_events()
            if self._on_events is not None and rest:
                self._on_events(rest)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float | None = 10.0) -> None:
        self.stream.stop()
        self.join(timeout)

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the end; True when it has ended."""
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def __enter__(self) -> "StreamHandle":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class _StreamRegistry:
    """The streams an Analyzer has open, so ``Analyzer.close()`` can stop them."""

    def __init__(self) -> None:
        self._streams: "weakref.WeakSet[FrameStream]" = weakref.WeakSet()
        self._lock = threading.Lock()

    def add(self, s: FrameStream) -> None:
        with self._lock:
            self._streams.add(s)

    def close_all(self) -> None:
        with self._lock:
            streams = list(self._streams)
        for s in streams:
            s.close()
