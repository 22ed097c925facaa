"""Frame sources: a video file, an image file, a webcam index, or a stream URL."""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .errors import SourceError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def redact(spec: str) -> str:
    """Hide credentials in a URL: rtsp://user:pass@host -> rtsp://user:***@host."""
    return re.sub(r"(://[^/:@]+):[^@/]*@", r"\1:***@", str(spec))


@dataclass
class Frame:
    """A decoded frame. index counts frames read; timestamp_s is the source's clock."""

    index: int
    image: np.ndarray
    timestamp_s: float
    captured_at: float  # time.perf_counter() when read (for capture-to-result latency)


class Source:
    """Base: ``read()`` returns the next Frame or None at the end; ``close()`` releases."""

    spec: str = ""
    is_live: bool = False
    fps: float = 30.0
    frame_count: int = 0  # 0 when unknown (live)
    size: tuple[int, int] = (0, 0)  # (width, height)

    def read(self) -> Frame | None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> "Source":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ImageSource(Source):
    """A single still image as a one-frame source (alpha and grayscale kept as read)."""

    def __init__(self, path: Path):
        self.spec = str(path)
        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise SourceError(f"cannot read image {path}: not a supported image file")
        if img.dtype != np.uint8:  # 16-bit PNG/TIFF
            img = (img / 257).astype(np.uint8) if img.dtype == np.uint16 else img.astype(np.uint8)
        self._img: np.ndarray | None = img
        self.frame_count, self.fps = 1, 1.0
        self.size = (img.shape[1], img.shape[0])

    def read(self) -> Frame | None:
        if self._img is None:
            return None
        img, self._img = self._img, None
        return Frame(0, img, 0.0, time.perf_counter())


class VideoSource(Source):
    """A video file, webcam or stream read with OpenCV (FFmpeg backend)."""

    def __init__(self, spec: str, live: bool):
        self.spec, self.is_live = spec, live
        target: int | str = int(spec) if spec.isdigit() else spec
        api = cv2.CAP_ANY if isinstance(target, int) else cv2.CAP_FFMPEG
        self._cap = cv2.VideoCapture(target, api)
        if not self._cap.isOpened():
            what = "camera" if isinstance(target, int) else ("stream" if live else "video")
            raise SourceError(f"cannot open {what} {redact(spec)}")
        self.fps = float(self._cap.get(cv2.CAP_PROP_FPS)) or 30.0
        if not (1.0 <= self.fps <= 240.0):
            self.fps = 30.0
        self.frame_count = 0 if live else max(0, int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT)))
        self.size = (int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
                     int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        self._index = 0
        self._first: np.ndarray | None = None
        if not live:  # a file that opens but has no decodable frame is not a video
            ok, img = self._cap.read()
            if not ok or img is None:
                self._cap.release()
                raise SourceError(f"cannot decode video {spec}: no readable frames")
            self._first = img

    def read(self) -> Frame | None:
        if self._first is not None:
            img, self._first = self._first, None
        else:
            ok, img = self._cap.read()
            if not ok or img is None:
                return None
        ts = self._index / self.fps
        if self.is_live:
            pos = self._cap.get(cv2.CAP_PROP_POS_MSEC)
            ts = pos / 1000.0 if pos > 0 else ts
        f = Frame(self._index, img, ts, time.perf_counter())
        self._index += 1
        return f

    def close(self) -> None:
        self._cap.release()


def open_source(spec: str | int | Path) -> Source:
    """Open a file path (video or image), a webcam index ("0") or a stream URL."""
    s = str(spec)
    if s.isdigit():
        return VideoSource(s, live=True)
    if _URL.match(s):
        return VideoSource(s, live=not s.startswith("file://"))
    path = Path(s).expanduser()
    if not path.exists():
        raise SourceError(f"source not found: {path}")
    if path.is_dir():
        raise SourceError(f"source is a directory, not a video or image: {path}")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageSource(path)
    return VideoSource(str(path), live=False)
