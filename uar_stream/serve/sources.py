"""Files as cameras: looped (start again at the end) and paced at their own frame rate.

A kiosk demo or a benchmark runs recorded clips as if they were cameras; ``file_opener``
returns the opener a :class:`~uar_stream.pipeline.stream.FrameStream` reads them with.
"""
from __future__ import annotations

import time
from typing import Callable

from uar_stream.config import SourceConfig
from uar_stream.flow import Frame
from uar_stream.pipeline.sources import Source, open_source


class PacedLoopSource(Source):
    """A file read again from the start at its end (``loop``) and/or no faster than its
    frame rate (``realtime``; the camera then reads it with the ``newest_only`` buffer
    policy, like a live camera). It stays a file (not live): an unlooped one ends at its end
    instead of being "reconnected". Timestamps keep increasing across loops."""

    def __init__(self, spec: str, config: SourceConfig, loop: bool, realtime: bool):
        self.spec, self._config, self.loop, self.realtime = spec, config, loop, realtime
        self._src = open_source(spec, config)
        self.fps, self.size = self._src.fps, self._src.size
        self.frame_count = 0 if loop else self._src.frame_count
        self.is_live = False
        self._offset_s = 0.0  # clip time before this loop
        self._last_ts = 0.0
        self._t0: float | None = None
        self._n = 0

    def read(self) -> Frame | None:
        """The next frame (after the clip's frame interval when real-time), None at the end
        of an unlooped file."""
        frame = self._src.read()
        if frame is None and self.loop:
            self._src.close()
            self._offset_s = self._last_ts + 1.0 / self.fps
            self._src = open_source(self.spec, self._config)
            frame = self._src.read()
        if frame is None:
            return None
        frame.timestamp_s += self._offset_s
        self._last_ts = frame.timestamp_s
        if self.realtime:
            self._pace()
            frame.captured_at = time.perf_counter()
        return frame

    def _pace(self) -> None:
        now = time.perf_counter()
        if self._t0 is None:
            self._t0 = now
        due = self._t0 + self._n / self.fps
        self._n += 1
        if due > now:
            time.sleep(due - now)
        elif now - due > 1.0:  # far behind (a stall): do not burst to catch up
            self._t0, self._n = now, 1

    def close(self) -> None:
        """Release the file."""
        self._src.close()


def file_opener(loop: bool, realtime: bool) -> Callable[[str, SourceConfig], Source] | None:
    """The opener for a file camera, or None (the plain one) when neither option is set."""
    if not (loop or realtime):
        return None
    return lambda spec, config: PacedLoopSource(spec, config, loop, realtime)
