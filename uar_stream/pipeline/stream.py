"""A managed stream: source -> (capture thread, detect thread) -> classify -> tracker -> sinks.

``FrameStream`` is what ``Analyzer.stream(source)`` returns: iterate it for one
:class:`~uar_stream.flow.StreamResult` per analysed frame; ``close()`` (or leaving a ``with``
block) stops the threads, releases the camera and closes the sinks with the summary.

Pipelined (``source.pipelined: true``), three threads share the work::

    reader thread   source.read() -> raw buffer (policy: wait / newest_only / drop_oldest)
    detect thread   raw -> stages.detect (detect + align) -> ready buffer
    caller's thread ready -> stages.classify (one engine call for the ready frames) -> tracker

so detection of frame t+1 overlaps inference on frame t (mediapipe, OpenCV and torch all
release the GIL). Synchronous mode does the same steps one after another on the caller's
thread (the baseline that ``tools/bench_live.py`` compares against).

The stream knows the stages only through :class:`FaceStages` (the Analyzer implements it),
so this module does not depend on the Analyzer.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable, Iterator, Protocol, Sequence

import numpy as np

from uar_stream.config import SourceConfig
from uar_stream.flow import Event, FaceBatch, FaceResult, Frame, RunSummary, Sink, StreamInfo, StreamResult
from uar_stream.pipeline.capture import (
    EndOfStream,
    FrameBuffer,
    ReconnectingReader,
    capture_loop,
    resolve_policy,
)
from uar_stream.pipeline.schedule import ClassifySchedule, DetectSchedule
from uar_stream.pipeline.sources import redact
from uar_stream.pipeline.tracking import FaceTracker


class FaceStages(Protocol):
    """What a stream needs from the analysis stages."""

    def detect(self, frame: np.ndarray, near=None) -> FaceBatch:
        """Detect and align the faces of one frame (on the calling thread's detector);
        ``near``: boxes to search around instead of the whole frame (only passed when the
        stream's ``detect_every`` is above 1)."""

    def classify(self, batches: list[FaceBatch]) -> list[list[FaceResult]]:
        """One engine call over the faces of several frames; routed results per frame."""

    def prepare_thread(self) -> None:
        """Build the calling thread's detector now (its start-up is not frame latency), with no
        memory of earlier frames."""

    def release_thread(self) -> None:
        """Close the calling thread's detector (a stream thread calls this on exit)."""

#: Frames whose capture-to-result latency the summary's percentiles cover.
LATENCY_WINDOW = 100_000


class RateMeter:
    """Frames analysed per second of wall time: the frames of the last ``window_s`` seconds
    over that window. Before a whole window has passed: frames after the first over the time
    since the first, and None until ``min_span_s`` (a burst of batched frames a millisecond
    apart is not thousands of fps)."""

    def __init__(self, window_s: float = 1.0, clock: Callable[[], float] = time.perf_counter,
                 min_span_s: float = 0.25):
        self.window_s, self.clock, self.min_span_s = window_s, clock, min_span_s
        self._times: deque[float] = deque()
        self._first: float | None = None

    def tick(self) -> float | None:
        """Count one frame now; the rate to show with it."""
        now = self.clock()
        if self._first is None:
            self._first = now
        self._times.append(now)
        while now - self._times[0] >= self.window_s:
            self._times.popleft()
        elapsed = now - self._first
        if elapsed >= self.window_s:
            return len(self._times) / self.window_s
        if elapsed < self.min_span_s:
            return None
        return (len(self._times) - 1) / elapsed


class FrameStream:
    """Iterate for :class:`StreamResult`; see the module docstring. Opening the source
    happens here, so a bad source raises :class:`~uar_stream.errors.SourceError` at once.

    ``sinks`` are opened when iteration starts (after the source opened: a bad source
    touches no output), handed every result, and closed with the :class:`RunSummary`
    however the stream ends (every sink that opened, even when one fails; the first
    failure is raised after). ``summary`` is final after ``close()``.
    """

    def __init__(self, stages: FaceStages, source, config: SourceConfig, *,
                 tracker: FaceTracker | None = None, sinks: Sequence[Sink] = (),
                 describe: dict | None = None, pipelined: bool | None = None,
                 opener: Callable | None = None, detect_every: int = 1, classify_every: int = 1,
                 follow_every: int = 1):
        self.stages = stages
        # detect_every / classify_every / follow_every: see pipeline/schedule.py (1 = every
        # frame in full)
        self._detect_plan = DetectSchedule(detect_every, follow_every)
        self.classify_plan = ClassifySchedule(classify_every)
        self.config = config
        self.pipelined = config.pipelined if pipelined is None else pipelined
        self._stop = threading.Event()
        # ``opener``: how the reader opens ``source`` (default ``open_source``); serve uses it
        # for looped and real-time-paced files.
        self.reader = ReconnectingReader(str(source), config, self._stop,
                                         **({"opener": opener} if opener is not None else {}))
        self.source = redact(str(source))
        self.is_live = self.reader.is_live
        self.fps, self.size, self.frame_count = self.reader.fps, self.reader.size, self.reader.frame_count
        self.policy = resolve_policy(config.buffer_policy, self.is_live)
        self.tracker = tracker
        self.sinks = list(sinks)
        self._opened: list[Sink] = []  # only these are closed
        self.info = StreamInfo(self.source, self.is_live, self.size[0], self.size[1], self.fps,
                               self.frame_count, self.policy, self.pipelined, tracker is not None,
                               **(describe or {}))
        self.summary = RunSummary(source=self.source)
        # The summary's latency percentiles: the last LATENCY_WINDOW frames (exact for files;
        # bounded memory for a camera that runs for weeks).
        self.latencies_ms: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._rate = RateMeter()
        self._pending: list[Event] = []
        self._raw: FrameBuffer | None = None
        self._ready: FrameBuffer | None = None
        self._threads: list[threading.Thread] = []
        self._t0 = time.perf_counter()
        self._started = False
        self._closed = False
        self._writing = False  # a result is being counted and handed to the sinks

    # -- public ---------------------------------------------------------------------------
    @property
    def frames(self) -> int:
        """Frames analysed so far."""
        return self.summary.frames

    @property
    def closing(self) -> bool:
        """True once ``close()`` has begun: the outputs are being (or have been) finalised."""
        return self._closed

    @property
    def writing(self) -> bool:
        """True while a result is counted and handed to the sinks: cutting that short would
        leave the sinks disagreeing (the event log holding a frame the video lacks)."""
        return self._writing

    @property
    def dropped(self) -> int:
        """Frames read from the source but never analysed (live buffer policies)."""
        return sum(b.dropped for b in (self._raw, self._ready) if b is not None)

    def stop(self) -> None:
        """Ask the stream to end; safe from any thread and from a signal handler."""
        self._stop.set()

    def interrupt(self) -> None:
        """Stop, and record that the user asked (Ctrl-C, SIGTERM)."""
        self.summary.interrupted = True
        self.stop()

    def drain_events(self) -> list[Event]:
        """Events not handed out with a result (track_ended at the end, a stream_lost
        before a failure); after ``close()`` they are in ``summary.final_events``."""
        out, self._pending = self._pending, []
        return out

    def __iter__(self) -> Iterator[StreamResult]:
        try:
            self._start()
            while not self._stop.is_set():
                done = yield from self._step()
                if done:
                    return
        except GeneratorExit:
            raise
        except BaseException as e:
            try:
                self.close(error=e)
            except Exception:  # noqa: BLE001 - the error that ended the stream matters more
                pass
            raise
        finally:
            self.close()

    def close(self, error: BaseException | None = None) -> None:
        """Stop the threads, release the source, close the sinks; idempotent. ``error``:
        what ended the stream abnormally (recorded in the summary)."""
        if self._closed:
            return
        self._closed = True
        if error is not None and not isinstance(error, KeyboardInterrupt):
            self.summary.error = str(error)
        elif isinstance(error, KeyboardInterrupt):
            self.summary.interrupted = True
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
        self._finish_summary()
        self._close_sinks()

    def __enter__(self) -> FrameStream:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(error=exc)

    # -- internals ------------------------------------------------------------------------
    def _start(self) -> None:
        if self._started:
            raise RuntimeError("a FrameStream can be iterated once")
        self._started = True
        self._t0 = time.perf_counter()
        for s in self.sinks:  # a sink that cannot open fails the stream before any analysis
            s.open(self.info)
            self._opened.append(s)
        if not self.pipelined:
            self.stages.prepare_thread()
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

    def _step(self):
        """Classify what is ready, in order; returns True at the end of the stream."""
        frames: list[tuple[Frame, FaceBatch]] = []
        for item in self._next_items() + [None]:
            if isinstance(item, tuple):
                frames.append(item)
                continue
            if frames:  # classify what came before a control item in one call
                yield from self._classify(frames)
                frames = []
            if isinstance(item, Event):
                self._pending.append(item)
                if item.kind == "stream_lost" and self.tracker is not None:
                    self._pending.extend(self.tracker.finish("stream_lost"))
            elif isinstance(item, EndOfStream):
                if item.error is not None:
                    raise item.error
                return True
        return False

    def _detect_loop(self) -> None:
        assert self._raw is not None and self._ready is not None
        try:
            self.stages.prepare_thread()
            self._detector_ready.set()
            while not self._stop.is_set():
                ok, item = self._raw.get(0.1)
                if not ok:
                    continue
                if isinstance(item, Frame):
                    if not self._ready.put((item, self._detect(item.image))):
                        break
                    continue
                self._ready.put(item, is_frame=False)
                if isinstance(item, EndOfStream):
                    break
        except BaseException as e:  # noqa: BLE001 - the consumer raises it
            self._ready.put(EndOfStream(e), is_frame=False)
        finally:
            self._detector_ready.set()
            self.stages.release_thread()

    def _next_items(self) -> list:
        if not self.pipelined:
            item = self.reader.next()
            if item is None:
                return [EndOfStream()]
            if isinstance(item, Frame):
                return [(item, self._detect(item.image))]
            return [item]
        assert self._ready is not None
        ok, item = self._ready.get(0.1)
        if not ok:
            return []
        return [item] + self._ready.get_ready(self.config.batch_frames - 1)

    def _detect(self, image: np.ndarray) -> FaceBatch:
        """Whole-frame detection, only around the followed faces (``detect_every``), or the
        last frame's faces kept (``follow_every``)."""
        plan = self._detect_plan
        if plan.hold():
            return plan.held()
        near = plan.regions()
        batch = self.stages.detect(image) if near is None else self.stages.detect(image, near)
        plan.done(batch, near is None)
        return batch

    def _classify(self, frames: list[tuple[Frame, FaceBatch]]) -> Iterator[StreamResult]:
        all_faces = self.classify_plan.classify(self.stages.classify, [b for _, b in frames])
        for (frame, _), faces in zip(frames, all_faces, strict=True):
            events, self._pending = self._pending, []
            if self.tracker is not None:
                faces, track_events = self.tracker.update(faces, frame.index, frame.timestamp_s,
                                                          frame.image)
                events.extend(track_events)
            latency = (time.perf_counter() - frame.captured_at) * 1000.0
            self.latencies_ms.append(latency)
            result = StreamResult(frame, faces, events, latency, self._rate.tick())
            self._writing = True
            try:
                self.summary.add(result)
                for s in self.sinks:
                    s.write(result)
            finally:
                self._writing = False
            yield result

    def _finish_summary(self) -> None:
        s = self.summary
        s.seconds = time.perf_counter() - self._t0
        s.dropped_frames = self.dropped
        if self.latencies_ms:
            s.latency_ms_p50 = round(float(np.percentile(self.latencies_ms, 50)), 2)
            s.latency_ms_p95 = round(float(np.percentile(self.latencies_ms, 95)), 2)
        s.reconnects = self.reader.reconnects
        s.tracks = self.tracker.total_tracks if self.tracker is not None else None
        s.final_events = self.drain_events()

    def _close_sinks(self) -> None:
        """Close every sink, even after one fails; a failure is recorded in the summary
        (so later sinks, e.g. the event log, report it) and the first one is raised."""
        first: BaseException | None = None
        for s in self._opened:
            try:
                s.close(self.summary)
            except Exception as e:  # noqa: BLE001 - re-raised below, after the others
                if first is None:
                    first = e
                    self.summary.error = self.summary.error or str(e)
        if first is not None:
            raise first


class StreamHandle:
    """A stream running on a background thread, calling ``on_result(result)`` per frame.

    ``stop()`` ends it; ``join()`` waits; ``error`` holds what ended it abnormally. Events
    left at the end (track_ended, a stream_lost before a failure) go to ``on_events``.
    """

    def __init__(self, stream: FrameStream, on_result: Callable[[StreamResult], None],
                 on_events: Callable[[list[Event]], None] | None = None):
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
            self.stream.close(error=e)
        finally:
            try:
                self.stream.close()
            except Exception as e:  # noqa: BLE001 - a sink failed to close
                self.error = self.error or e
            rest = self.stream.summary.final_events
            if self._on_events is not None and rest:
                self._on_events(rest)

    @property
    def running(self) -> bool:
        """True while the stream thread runs."""
        return self._thread.is_alive()

    def stop(self, timeout: float | None = 10.0) -> None:
        """Ask the stream to end and wait up to ``timeout`` seconds."""
        self.stream.stop()
        self.join(timeout)

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the end; True when it has ended."""
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def __enter__(self) -> StreamHandle:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
