"""The annotated video (or image) sink, and the writer under it."""
from __future__ import annotations

import struct
import time
from pathlib import Path

import cv2
import numpy as np

from uar_stream.errors import SinkError
from uar_stream.flow import RunSummary, StreamInfo, StreamResult
from uar_stream.pipeline.sinks.drawing import FrameDrawer
from uar_stream.pipeline.sinks.files import disk_full, disk_problem, write_whole
from uar_stream.pipeline.sources import IMAGE_SUFFIXES


class VideoWriter:
    """Writes annotated frames; opened lazily at the first frame (its size is the video's).
    An output path with an image suffix writes the last frame as an image.

    OpenCV's writer reports no write errors, so this class checks for itself: while writing,
    that the disk has room (every ``check_every_s``); after release, that the file is
    complete (an mp4/mov has its ``moov`` index and no cut box, an avi its whole RIFF, and
    OpenCV can read a frame back). Any failure is a one-line :class:`SinkError` naming the
    file and the cause (``No space left on device``, ...). An output that got no frame is
    removed when this writer created it (an empty file is no video).
    """

    check_every_s = 1.0

    def __init__(self, path: str | Path, fps: float, codec: str = "mp4v"):
        self.path = Path(path)
        self.fps, self.codec = fps, codec
        self._writer: cv2.VideoWriter | None = None
        self._last: np.ndarray | None = None
        self.frames = 0
        self._created = not self.path.exists()
        self._next_check = 0.0
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
        if path.is_dir():
            raise SinkError(f"cannot write output {path}: Is a directory")
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
                self._writer = None
                cause = disk_problem(self.path.parent)
                if cause:
                    raise SinkError(f"cannot write output {self.path}: {cause}")
                raise SinkError(f"cannot write video {self.path} with codec {self.codec!r} "
                                "(try output.codec: mp4v, or a .avi/.mp4 name)")
        self._writer.write(frame)
        self.frames += 1
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + self.check_every_s
            if disk_full(self.path.parent):
                raise SinkError(f"cannot write output {self.path}: No space left on device")

    def close(self) -> None:
        """Finalise the file (idempotent); raise SinkError when it is not complete."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
            problem = video_problem(self.path)
            if problem:
                cause = disk_problem(self.path.parent)
                raise SinkError(f"cannot write output {self.path}: {cause or problem}")
        elif self.is_image and self._last is not None:
            img, self._last = self._last, None
            self._write_image(img)
        elif self.frames == 0 and self._created:
            self.path.unlink(missing_ok=True)  # touched at open; no frame came

    def _write_image(self, img: np.ndarray) -> None:
        ok, buf = cv2.imencode(self.path.suffix, img)
        if not ok:
            raise SinkError(f"cannot write image {self.path}: cannot encode {self.path.suffix}")
        try:  # whole or not at all: a full disk leaves the old file, not half an image
            write_whole(self.path, buf.tobytes())
        except OSError as e:
            raise SinkError(f"cannot write output {self.path}: {e.strerror or e}") from None


def video_problem(path: Path) -> str | None:
    """Why the finished video at ``path`` is not playable, or None when it is."""
    try:
        size = path.stat().st_size
    except OSError as e:
        return e.strerror or str(e)
    if size == 0:
        return "the file is empty"
    suffix = path.suffix.lower()
    problem = None
    if suffix in (".mp4", ".mov", ".m4v"):
        problem = _mp4_problem(path, size)
    elif suffix == ".avi":
        problem = _riff_problem(path, size)
    if problem is None:
        cap = cv2.VideoCapture(str(path))
        readable = cap.isOpened() and cap.read()[0]
        cap.release()
        problem = None if readable else "the file is not readable as a video"
    return problem


def _mp4_problem(path: Path, size: int) -> str | None:
    """Walk the top-level boxes: each whole, and a ``moov`` among them."""
    seen, pos = set(), 0
    with open(path, "rb") as f:
        while pos < size:
            f.seek(pos)
            head = f.read(16)
            if len(head) < 8:
                return "the file is incomplete (a cut box header)"
            n, kind = struct.unpack(">I4s", head[:8])
            if n == 1:
                n = struct.unpack(">Q", head[8:16])[0] if len(head) == 16 else 0
            elif n == 0:
                n = size - pos
            if n < 8 or pos + n > size:
                return f"the file is incomplete (box {kind.decode('latin-1')!r} cut)"
            seen.add(kind)
            pos += n
    return None if b"moov" in seen else "the file is incomplete (no moov atom: unplayable)"


def _riff_problem(path: Path, size: int) -> str | None:
    with open(path, "rb") as f:
        head = f.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"AVI ":
        return "the file is incomplete (no AVI header)"
    riff = struct.unpack("<I", head[4:8])[0]
    return None if riff + 8 <= size else "the file is incomplete (cut short)"


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
