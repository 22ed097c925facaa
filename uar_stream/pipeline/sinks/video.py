"""Outputs: the annotated video (or image)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from uar_stream.errors import SinkError
from uar_stream.pipeline.sources import IMAGE_SUFFIXES


class VideoSink:
    """Writes annotated frames; opened lazily at the first frame (its size is the video's).
    An output path with an image suffix writes the last frame as an image."""

    def __init__(self, path: str | Path, fps: float, codec: str = "mp4v"):
        self.path = Path(path)
        self.fps, self.codec = fps, codec
        self._writer: cv2.VideoWriter | None = None
        self._last: np.ndarray | None = None
        self.frames = 0
        parent = self.path.parent
        if not parent.exists():
            try:
                parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise SinkError(f"cannot create output folder {parent}: {e.strerror or e}") from None
        try:  # fail now, not after minutes of analysis
            with open(self.path, "ab"):
                pass
        except OSError as e:
            raise SinkError(f"cannot write output {self.path}: {e.strerror or e}") from None

    @property
    def is_image(self) -> bool:
        return self.path.suffix.lower() in IMAGE_SUFFIXES

    def write(self, frame: np.ndarray) -> None:
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
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        if self.is_image and self._last is not None:
            if not cv2.imwrite(str(self.path), self._last):
                raise SinkError(f"cannot write image {self.path}")
            self._last = None
