"""The annotated video (or image) sink, and the writer under it."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from uar_stream.errors import SinkError
from uar_stream.flow import RunSummary, StreamInfo, StreamResult
from uar_stream.pipeline.sinks.drawing import FrameDrawer
from uar_stream.pipeline.sources import IMAGE_SUFFIXES


class VideoWriter:
    """Writes annotated frames; opened lazily at the first frame (its size is the video's).
    An output path with an image suffix writes the last frame as an image."""

    def __init__(self, path: str | Path, fps: float, codec: str = "mp4v"):
        self.path = Path(path)
        self.fps, self.codec = fps, codec
        self._writer: cv2.VideoWriter | None = None
        self._last: np.ndarray | None = None
        self.frames = 0
        self.check_writable(self.path)

    @staticmethod
    def check_writable(path: Path) -> None:
        """Create the folder and touch the file, or raise a one-line SinkError."""
        parent = path.parent
        if not parent.exists():
            try:
                parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise SinkError(f"cannot create output folder {parent}: {e.strerror or e}") from None
        try:
            with open(path, "ab"):
                pass
        except OSError as e:
            raise SinkError(f"cannot write output {path}: {e.strerror or e}") from None

    @property
    def is_image(self) -> bool:
        """True when the path names an image: the last frame is written as that image."""
        return self.path.suffix.lower() in IMAGE_SUFFIXES

    def write(self, frame: np.ndarray) -> None:
        """Append one BGR frame (the first one fixes the video's size)."""
        if self.is_image:
            self._last = frame
            self.frames += 1
            return
        if self._writer is None:
            h, w = frame.shape[:2]
            self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*self.codec),
                                           self.fps, (w, h))
            if not self._writer.isOpened():
                raise SinkError(f"cannot write video {self.path} with codec {self.codec!r} "
                                "(try output.codec: mp4v, or a .avi/.mp4 name)")
        self._writer.write(frame)
        self.frames += 1

    def close(self) -> None:
        """Finalise the file (idempotent)."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        if self.is_image and self._last is not None:
            if not cv2.imwrite(str(self.path), self._last):
                raise SinkError(f"cannot write image {self.path}")
            self._last = None


class AnnotatedVideoSink:
    """Writes each frame with the overlay to a video (or, for an image path, the last frame).

    A restored stream may come back at another size: the video keeps the first frame's size.
    """

    def __init__(self, path: str | Path, drawer: FrameDrawer, codec: str = "mp4v"):
        self.path = Path(path)
        self.drawer, self.codec = drawer, codec
        self.writer: VideoWriter | None = None
        self._size: tuple[int, int] | None = None

    def open(self, info: StreamInfo) -> None:
        """Create the file (SinkError if it cannot be written) at the stream's frame rate."""
        self.writer = VideoWriter(self.path, info.fps, self.codec)

    def write(self, result: StreamResult) -> None:
        """Draw the frame (once, shared with other sinks) and append it."""
        assert self.writer is not None, "open() first"
        drawn = self.drawer.draw(result)
        self._size = self._size or (drawn.shape[1], drawn.shape[0])
        if (drawn.shape[1], drawn.shape[0]) != self._size:
            drawn = cv2.resize(drawn, self._size, interpolation=cv2.INTER_AREA)
        self.writer.write(drawn)

    def close(self, summary: RunSummary) -> None:
        """Finalise the video."""
        if self.writer is not None:
            self.writer.close()
