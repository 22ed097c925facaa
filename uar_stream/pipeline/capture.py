"""Capture: read frames on their own thread into a bounded buffer, reconnecting live streams.

Buffer policies (config ``source.buffer_policy``), named for what they do:

- ``wait``: the reader blocks when the buffer is full (back-pressure); every frame is
  analysed. The default for files.
- ``newest_only``: the buffer holds one frame; a new frame replaces an unread one. The
  default for live sources: the result is always about the latest picture, and latency
  stays bounded however slow inference is.
- ``drop_oldest``: hold up to ``buffer_size`` frames, dropping the oldest when full.

Dropped frames are counted. Control items (stream_lost / stream_restored, the end of the
stream) are never dropped and keep their order relative to frames.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

from uar_stream.config import SourceConfig
from uar_stream.errors import SourceError
from uar_stream.flow import Event, Frame
from uar_stream.pipeline.sources import Source, is_live_spec, open_source, redact

log = logging.getLogger("uar_stream.pipeline.capture")

POLICIES = ("wait", "drop_oldest", "newest_only")


def resolve_policy(policy: str, is_live: bool) -> str:
    """``auto`` -> ``newest_only`` for live sources, ``wait`` for files."""
    if policy == "auto":
        return "newest_only" if is_live else "wait"
    return policy


@dataclass
class EndOfStream:
    """The last item: ``error`` is set when the stream ended because of a failure."""

    error: BaseException | None = None


class FrameBuffer:
    """A bounded, thread-safe hand-off with a drop policy (see the module docstring)."""

    def __init__(self, policy: str, size: int):
        if policy not in POLICIES:
            raise ValueError(f"buffer policy {policy!r}; allowed: {', '.join(POLICIES)}")
        self.policy = policy
        self.size = 1 if policy == "newest_only" else max(1, size)
        self.dropped = 0
        self._items: deque = deque()
        self._frames = 0  # frames (not control items) in _items
        self._cond = threading.Condition()
        self._closed = False

    def put(self, item: Any, is_frame: bool = True) -> bool:
        """Add an item; False when the buffer was closed (the consumer has gone)."""
        with self._cond:
            if is_frame and self.policy == "wait":
                while self._frames >= self.size and not self._closed:
                    self._cond.wait(0.1)
            if self._closed:
                return False
            if is_frame and self.policy != "wait":
                while self._frames >= self.size:
                    self._drop_oldest_frame()
            self._items.append((item, is_frame))
            self._frames += is_frame
            self._cond.notify_all()
            return True

    def _drop_oldest_frame(self) -> None:
        for i, (_, is_frame) in enumerate(self._items):
            if is_frame:
                del self._items[i]
                self._frames -= 1
                self.dropped += 1
                return

    def get(self, timeout: float = 0.1) -> tuple[bool, Any]:
        """(True, item), or (False, None) when nothing arrived within ``timeout``."""
        with self._cond:
            if not self._items:
                self._cond.wait(timeout)
            if not self._items:
                return False, None
            item, is_frame = self._items.popleft()
            self._frames -= is_frame
            self._cond.notify_all()
            return True, item

    def get_ready(self, limit: int) -> list[Any]:
        """Up to ``limit`` items already waiting, without blocking."""
        out = []
        with self._cond:
            while self._items and len(out) < limit:
                item, is_frame = self._items.popleft()
                self._frames -= is_frame
                out.append(item)
            self._cond.notify_all()
        return out

    def close(self) -> None:
        """Wake every waiting thread; puts fail from now on."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class ReconnectingReader:
    """Reads frames from a source; a live source that stops is reopened with exponential
    backoff (``source.reconnect_attempts``, ``backoff_initial_s`` .. ``backoff_max_s``).

    ``next()`` returns a :class:`Frame`, an :class:`Event` (stream_lost, stream_restored), or
    None at the end of a file; it raises :class:`SourceError` when a lost stream cannot be
    restored. Frame indexes keep counting across reconnects; live timestamps are seconds
    since the source was opened, so they stay monotonic across a gap.
    """

    def __init__(self, spec: str, config: SourceConfig | None = None,
                 stop: threading.Event | None = None,
                 opener: Callable[[str, SourceConfig], Source] = open_source):
        self.spec, self.config = str(spec), config or SourceConfig()
        self.stop = stop or threading.Event()
        self._opener = opener
        self.source = opener(self.spec, self.config)  # a bad first open is the user's error
        self.is_live = self.source.is_live or is_live_spec(self.spec)
        self.fps, self.size, self.frame_count = self.source.fps, self.source.size, self.source.frame_count
        self._index = 0
        self._t0 = time.perf_counter()
        self._lost_at: float | None = None
        self._lost_reason = ""
        self.reconnects = 0

    def next(self) -> Frame | Event | None:
        """The next frame, link event, or None at the end of a file (see the class docstring)."""
        if self._lost_at is not None:
            return self._reconnect()
        try:
            frame = self.source.read() if self.source is not None else None
            reason = "end of stream"
        except Exception as e:  # a decoder error on a live stream is a loss, not a crash
            frame, reason = None, f"read failed ({type(e).__name__})"
        if frame is not None:
            frame.index = self._index
            if self.is_live:
                frame.timestamp_s = frame.captured_at - self._t0
            self._index += 1
            return frame
        if not self.is_live:
            return None
        self._lost_at, self._lost_reason = time.perf_counter(), reason
        self._close_source()
        # Stamped now, when the loss is noticed, not when a consumer gets to it.
        return Event("stream_lost", {"source": redact(self.spec), "reason": reason,
                                     "last_frame": self._index - 1,
                                     "t": round(self._lost_at - self._t0, 3)})

    def _reconnect(self) -> Event | None:
        c = self.config
        wait = c.backoff_initial_s
        for attempt in range(1, c.reconnect_attempts + 1):
            if self.stop.wait(wait):
                return None
            try:
                self.source = self._opener(self.spec, c)
            except SourceError as e:
                log.info("reconnect %d/%d to %s failed: %s", attempt, c.reconnect_attempts,
                         redact(self.spec), e)
                wait = min(max(wait * 2, 0.05), c.backoff_max_s)
                continue
            gap = time.perf_counter() - self._lost_at
            self._lost_at = None
            self.reconnects += 1
            self.fps, self.size = self.source.fps, self.source.size
            return Event("stream_restored", {"source": redact(self.spec), "attempts": attempt,
                                             "gap_s": round(gap, 3), "next_frame": self._index,
                                             "width": self.size[0], "height": self.size[1]})
        gap = time.perf_counter() - self._lost_at
        raise SourceError(f"stream {redact(self.spec)} lost ({self._lost_reason}) and not restored "
                          f"after {c.reconnect_attempts} reconnect attempts over {gap:.1f} s")

    def _close_source(self) -> None:
        if self.source is not None:
            try:
                self.source.close()
            finally:
                self.source = None

    def close(self) -> None:
        """Release the current source."""
        self._close_source()


def capture_loop(reader: ReconnectingReader, out: FrameBuffer) -> None:
    """The reader thread: frames and link events into ``out`` until the end, a stop, or an
    error; always finishes with one :class:`EndOfStream` and releases the source."""
    end = EndOfStream()
    try:
        while not reader.stop.is_set():
            item = reader.next()
            if item is None:
                break
            if not out.put(item, is_frame=isinstance(item, Frame)):
                break
    except BaseException as e:  # noqa: BLE001 - handed to the consumer, which raises it
        end = EndOfStream(e)
    finally:
        reader.close()
        out.put(end, is_frame=False)
