"""Frame sources: a video file, an image file, a webcam index, or a stream URL."""
from __future__ import annotations

import logging
import os
import re
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

# FFmpeg's own messages can print stream URLs with their credentials, and OpenCV warns on
# every failed reconnect try; keep both quiet unless the user asks (set the variables).
# Read by OpenCV at the first FFmpeg open, so setting them here (before any open) works.
if "OPENCV_FFMPEG_LOGLEVEL" not in os.environ:
    os.environ["OPENCV_FFMPEG_LOGLEVEL"] = "-8"  # AV_LOG_QUIET
if "OPENCV_LOG_LEVEL" not in os.environ:
    # silent: OpenCV's failures reach us as return values; its own lines (e.g. "Camera index
    # out of range" for a missing webcam) would only sit beside our one-line error
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)

from uar_stream.errors import InputError, SourceError
from uar_stream.flow import Frame

log = logging.getLogger("uar_stream")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


# A URL's scheme and "://", raw or percent-encoded (a URL inside a query string or a page),
# then the rest of its token: URLs in messages end at whitespace or a quote.
_URL_TOKEN = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*(?:://|%3A%2F%2F))([^\s\"'<>]*)")
_AT = re.compile(r"(?i)@|%40")


def _redact_token(m: re.Match) -> str:
    rest = m.group(2)
    # The userinfo ends at the LAST '@' (raw or %40) of the token, not the first: a password
    # may hold a raw '@', '/', ':', '#' or '?' that no parser would accept but users type.
    # A path or query with an '@' is over-redacted (its host is hidden too): safe side.
    ats = list(_AT.finditer(rest))
    if not ats:
        return m.group(0)
    return f"{m.group(1)}***{rest[ats[-1].start():]}"


def redact(text: str) -> str:
    """Hide the whole userinfo of every URL in ``text``: ``rtsp://user:pass@host/x`` ->
    ``rtsp://***@host/x``, however the password is written (raw or percent-encoded ``@ / : #
    ?``), and in percent-encoded URLs too (``rtsp%3A%2F%2Fu%3Ap%40host``). Text without a URL
    is returned unchanged. Used for every log line, event, error, summary and page."""
    s = str(text)
    if "://" not in s and "%3a%2f%2f" not in s.lower():
        return s
    return _URL_TOKEN.sub(_redact_token, s)


_IMAGE_EXPECTED = ("a numpy array (H, W) gray, (H, W, 3) BGR or (H, W, 4) BGRA, of uint8 "
                   "(uint16, or float in 0..1, are converted)")


def as_image(frame) -> np.ndarray:
    """``frame`` as a uint8 image for the detector, or :class:`InputError` saying what is
    expected. Accepts gray, BGR and BGRA; uint16 is scaled down, float must lie in 0..1
    (scaled by 255). Rejects None, lists, empty arrays, other shapes and dtypes."""
    if not isinstance(frame, np.ndarray):
        raise InputError(f"expected an image as {_IMAGE_EXPECTED}; got {type(frame).__name__}")
    if frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] not in (1, 3, 4)):
        raise InputError(f"expected an image as {_IMAGE_EXPECTED}; got shape {frame.shape}")
    if frame.size == 0:
        raise InputError(f"expected a non-empty image; got shape {frame.shape}")
    if frame.dtype == np.uint8:
        return frame
    if frame.dtype == np.uint16:
        return (frame // 257).astype(np.uint8)
    if frame.dtype.kind == "f":
        if not np.isfinite(frame).all():
            raise InputError("a float image must hold finite values in 0..1 (got NaN or inf)")
        if frame.min() < 0.0 or frame.max() > 1.0:
            raise InputError("a float image must hold finite values in 0..1 (got "
                             f"{float(frame.min()):g}..{float(frame.max()):g})")
        return np.round(frame * 255.0).astype(np.uint8)
    raise InputError(f"expected an image as {_IMAGE_EXPECTED}; got dtype {frame.dtype}")


def warn_detection_limits(shape: tuple, found: int, detector, warned: set[str]) -> None:
    """Warn (once per ``warned`` set and kind) when a frame's size or face count limits what
    the detector can return: smaller than ``detector.min_face_px`` (no face fits), or more
    faces than ``detector.max_faces`` (only that many, the detector's first, are analysed)."""
    h, w = shape[:2]
    if min(h, w) < detector.min_face_px and "small" not in warned:
        warned.add("small")
        log.warning("frame %dx%d is smaller than detector.min_face_px (%d): no face can be found "
                    "in it", w, h, detector.min_face_px)
    if found > detector.max_faces and "cap" not in warned:
        warned.add("cap")
        log.warning("detector.max_faces reached: %d faces found in a %dx%d frame, the detector's first "
                    "%d are analysed (BlazeFace's by score, then the other models'; raise "
                    "detector.max_faces for crowds)",
                    found, w, h, detector.max_faces)


class Source:
    """Base: ``read()`` returns the next Frame or None at the end; ``close()`` releases."""

    spec: str = ""
    is_live: bool = False
    fps: float = 30.0
    frame_count: int = 0  # 0 when unknown (live)
    size: tuple[int, int] = (0, 0)  # (width, height)

    def read(self) -> Frame | None:
        """The next frame, or None at the end."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the source."""
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
        if img.dtype.kind == "f":  # float TIFF/EXR: 0..1 or 0..255, clipped (HDR has no true range)
            img = np.nan_to_num(img, nan=0.0, posinf=255.0, neginf=0.0)
            img = img * 255.0 if img.max() <= 1.0 else img
            img = np.clip(img, 0, 255).astype(np.uint8)
        elif img.dtype == np.uint16:  # 16-bit PNG/TIFF
            img = (img // 257).astype(np.uint8)
        elif img.dtype != np.uint8:
            img = np.clip(img, 0, 255).astype(np.uint8)
        self._img: np.ndarray | None = img
        self.frame_count, self.fps = 1, 1.0
        self.size = (img.shape[1], img.shape[0])

    def read(self) -> Frame | None:
        """The image once, then None."""
        if self._img is None:
            return None
        img, self._img = self._img, None
        return Frame(0, img, 0.0, time.perf_counter())


class VideoSource(Source):
    """A video file, webcam or stream read with OpenCV (FFmpeg backend).

    Streams get open/read timeouts so a dead server is noticed within seconds instead of
    FFmpeg's default of blocking for a long time.
    """

    def __init__(self, spec: str, live: bool, open_timeout_s: float = 5.0,
                 read_timeout_s: float = 3.0, rtsp_transport: str = "tcp"):
        self.spec, self.is_live = spec, live
        target: int | str = int(spec) if spec.isdigit() else spec
        if isinstance(target, int):
            self._cap = cv2.VideoCapture(target, cv2.CAP_ANY)
        else:
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(open_timeout_s * 1000),
                      cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(read_timeout_s * 1000)]
            with _ffmpeg_options(spec, rtsp_transport):
                self._cap = cv2.VideoCapture(target, cv2.CAP_FFMPEG, params)
        if not self._cap.isOpened():
            what = "camera" if isinstance(target, int) else ("stream" if live else "video")
            why = ""
            if live and not isinstance(target, int):
                why = f" (no answer within {open_timeout_s:g} s, or not a video)"
            raise SourceError(f"cannot open {what} {redact(spec)}{why}")
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
        """The next decoded frame, or None at the end (or on a failed read)."""
        if self._first is not None:
            img, self._first = self._first, None
        else:
            ok, img = self._cap.read()
            if not ok or img is None:
                return None
        now = time.perf_counter()
        ts, pos_s = self._index / self.fps, None
        if self.is_live:
            pos_s = self._cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
            ts = pos_s if pos_s > 0 else ts
        f = Frame(self._index, img, ts, now, pos_s)
        self._index += 1
        return f

    def close(self) -> None:
        """Release the capture."""
        self._cap.release()


_ENV_LOCK = threading.Lock()
_FFMPEG_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"


@contextmanager
def _ffmpeg_options(spec: str, rtsp_transport: str):
    """OpenCV takes FFmpeg options only from a process-wide variable: set the RTSP transport
    just for this open (serialised), unless the user set the variable themselves."""
    if not spec.lower().startswith("rtsp") or rtsp_transport == "auto" or _FFMPEG_ENV in os.environ:
        yield
        return
    with _ENV_LOCK:
        os.environ[_FFMPEG_ENV] = f"rtsp_transport;{rtsp_transport}"
        try:
            yield
        finally:
            os.environ.pop(_FFMPEG_ENV, None)


def is_live_spec(spec: str | int | Path) -> bool:
    """Webcam indexes and stream URLs are live (frames come at the camera's pace)."""
    s = str(spec)
    return s.isdigit() or (bool(_URL.match(s)) and not s.startswith("file://"))


def open_source(spec: str | int | Path, config=None) -> Source:
    """Open a file path (video or image), a webcam index ("0") or a stream URL.

    ``config``: a :class:`uar_stream.config.SourceConfig` (timeouts, RTSP transport);
    None uses its defaults.
    """
    s = str(spec)
    if not s.strip():
        raise SourceError("empty source: give a video or image path, a webcam index or a stream URL")
    opts = {}
    if config is not None:
        opts = {"open_timeout_s": config.open_timeout_s, "read_timeout_s": config.read_timeout_s,
                "rtsp_transport": config.rtsp_transport}
    if s.isdigit():
        return VideoSource(s, live=True, **opts)
    if _URL.match(s):
        return VideoSource(s, live=not s.startswith("file://"), **opts)
    path = Path(s).expanduser()
    if not path.exists():
        raise SourceError(f"source not found: {path}")
    if path.is_dir():
        raise SourceError(f"source is a directory, not a video or image: {path}")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        try:
            return ImageSource(path)
        except SourceError as not_image:  # a video named .jpg: go by the content, as FFmpeg does
            try:
                video = VideoSource(str(path), live=False, **opts)
            except SourceError:
                raise not_image from None
            log.warning("%s is a video, not an image (its name says image): read as a video", path)
            return video
    return VideoSource(str(path), live=False, **opts)
