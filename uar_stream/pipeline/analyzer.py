"""Analyzer: composes the stages (faces -> engine -> uncertainty -> router). The CLI and
embedding apps use only this class."""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import cv2
import numpy as np

from uar_stream.config import AnalyzerConfig, load_config
from uar_stream.backends import Engine, create_engine
from uar_stream.errors import ModelError
from uar_stream.pipeline.faces import DetectedFace, FaceDetector, align_face, to_bgr
from uar_stream.model.store import model_id, read_manifest
from uar_stream.pipeline.overlay import Overlay
from uar_stream.model.preprocess import INPUT_SIZE, prepare_batch
from uar_stream.flow import FaceResult
from uar_stream.pipeline.routing import Router

if TYPE_CHECKING:
    from uar_stream.pipeline.stream import FrameStream, StreamHandle
    from uar_stream.pipeline.tracking import FaceTracker

log = logging.getLogger("uar_stream")

_PACKAGE_ROOT = Path(__file__).resolve().parent.parent


def resolve_model_path(path: str | Path) -> Path:
    """A relative model path is looked up in the working directory, then beside the package
    (the checkout that ``pip install -e .`` points at)."""
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists():
        return p
    beside = _PACKAGE_ROOT / p
    return beside if beside.exists() else p


@dataclass
class FaceBatch:
    """The faces of one frame, detected and aligned. crops: uint8 (N, S, S)."""

    faces: list[DetectedFace]
    crops: np.ndarray
    frame_shape: tuple[int, int]


class Analyzer:
    """Frame in, list of :class:`FaceResult` out.

    >>> with Analyzer.from_config("configs/default.yaml") as an:
    ...     results = an.analyze(frame_bgr)
    ...     an.draw(frame_bgr, results)

    Safe to call from several threads: each thread gets its own face detector, and the
    engine call is serialised.
    """

    def __init__(self, config: AnalyzerConfig, engine: Engine | None = None):
        self.config = config
        self.model_dir = resolve_model_path(config.model.path)
        self.manifest = read_manifest(self.model_dir)
        if self.manifest.input_size != INPUT_SIZE:
            raise ModelError(f"{self.model_dir}: input_size {self.manifest.input_size} differs from "
                             f"the canonical crop ({INPUT_SIZE})")
        self.model_id = model_id(self.model_dir)
        e = config.engine
        self.engine = engine or create_engine(self.model_dir, e.backend, e.device, e.precision,
                                              e.max_batch, e.threads)
        self.classes = tuple(self.manifest.classes)
        self.router = Router(config.routing.tau_epistemic, config.routing.tau_aleatoric)
        self.overlay = Overlay(config.overlay)
        self._local = threading.local()
        self._detectors: list[FaceDetector] = []
        self._engine_lock = threading.Lock()
        self._closed = False

    @classmethod
    def from_config(cls, source: str | Path | dict | AnalyzerConfig | None = None,
                    **overrides: Any) -> "Analyzer":
        """Build from a YAML path, a dict or a config; ``overrides`` use dotted keys with
        '__' for the dot, e.g. ``routing__tau_epistemic=0.1``."""
        return cls(load_config(source, {k.replace("__", "."): v for k, v in overrides.items()}))

    # -- stages ---------------------------------------------------------------------------
    def _detector(self) -> FaceDetector:
        det = getattr(self._local, "detector", None)
        if det is None:
            d = self.config.detector
            det = FaceDetector(d.model, d.min_confidence, d.min_face_px)
            self._local.detector = det
            self._detectors.append(det)
        return det

    def detect(self, frame: np.ndarray) -> FaceBatch:
        """Detect and align every face of a frame (any of gray, BGR, BGRA)."""
        bgr = to_bgr(frame)
        faces = self._detector().detect(bgr)
        faces = sorted(faces, key=lambda f: -f.score)[: self.config.detector.max_faces]
        if not faces:
            return FaceBatch([], np.zeros((0, INPUT_SIZE, INPUT_SIZE), np.uint8), bgr.shape[:2])
        gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        crops = np.stack([align_face(gray, f.landmarks, INPUT_SIZE) for f in faces])
        return FaceBatch(faces, crops, bgr.shape[:2])

    def classify(self, batches: list[FaceBatch]) -> list[list[FaceResult]]:
        """Run the engine ONCE over the faces of several frames and route each face."""
        sizes = [len(b.faces) for b in batches]
        if sum(sizes) == 0:
            return [[] for _ in batches]
        x = prepare_batch(np.concatenate([b.crops for b in batches if len(b.faces)]))
        with self._engine_lock:
            out = self.engine.infer(x)
        results: list[list[FaceResult]] = []
        i = 0
        for b in batches:
            frame_res = []
            for f in b.faces:
                probs = out.mean_probs[i]
                k = int(np.argmax(probs))
                frame_res.append(FaceResult(
                    box=f.box, landmarks=f.landmarks, detection_score=f.score, probs=probs,
                    label=self.classes[k], confidence=float(probs[k]),
                    aleatoric=float(out.aleatoric[i]), epistemic=float(out.epistemic[i]),
                    total=float(out.total[i]),
                    route=self.router.route(float(out.aleatoric[i]), float(out.epistemic[i])),
                    classes=self.classes))
                i += 1
            results.append(frame_res)
        return results

    def analyze(self, frame: np.ndarray) -> list[FaceResult]:
        """Detect, align, classify and route every face in one frame."""
        return self.classify([self.detect(frame)])[0]

    def draw(self, frame: np.ndarray, results: list[FaceResult], fps: float | None = None) -> np.ndarray:
        """Overlay the results on a BGR copy of the frame."""
        out = to_bgr(frame).copy()
        if self.config.overlay.enabled:
            self.overlay.annotate(out, results, fps)
        return out

    # -- streams (live sources, kiosk embedding) -------------------------------------------
    def new_tracker(self) -> "FaceTracker":
        """A face tracker (ids, smoothing, hysteresis; config ``tracking``) for one stream."""
        from uar_stream.pipeline.tracking import FaceTracker

        return FaceTracker(self.config.tracking, self.router, self.classes)

    def stream(self, source: str | int | Path, on_result: "Callable | None" = None,
               **options: Any) -> "FrameStream | StreamHandle":
        """Analyse a file, webcam index or stream URL as a managed stream.

        Without ``on_result``: a :class:`~uar_stream.pipeline.stream.FrameStream` to iterate in
        the caller's thread (``for r in an.stream(0): r.faces, r.image``). With it: the
        stream runs on a background thread and calls ``on_result(r)`` per frame; returns a
        :class:`~uar_stream.pipeline.stream.StreamHandle` (``stop()``, ``join()``, ``error``).
        ``options``: ``pipelined``, ``tracking`` (bools), ``config`` (a SourceConfig),
        and with ``on_result``: ``on_events`` (called with the events left at the end).
        Closing the stream, or this Analyzer, stops its threads and releases the source.
        """
        from uar_stream.pipeline.stream import FrameStream, StreamHandle

        on_events = options.pop("on_events", None)
        s = FrameStream(self, source, **options)
        return s if on_result is None else StreamHandle(s, on_result, on_events)

    def run_in_background(self, source: str | int | Path, on_result: "Callable",
                          **options: Any) -> "StreamHandle":
        """``stream(source, on_result=...)``: analyse on a background thread."""
        return self.stream(source, on_result=on_result, **options)

    def release_thread_detector(self) -> None:
        """Close the calling thread's face detector (stream threads call this on exit)."""
        det = getattr(self._local, "detector", None)
        if det is not None:
            self._local.detector = None
            try:
                self._detectors.remove(det)
            except ValueError:
                pass
            det.close()

    def _register_stream(self, s: "FrameStream") -> None:
        reg = self.__dict__.get("_stream_registry")
        if reg is None:
            from uar_stream.pipeline.stream import _StreamRegistry

            reg = self.__dict__.setdefault("_stream_registry", _StreamRegistry())
        reg.add(s)

    # -- lifetime -------------------------------------------------------------------------
    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        reg = self.__dict__.get("_stream_registry")
        if reg is not None:  # streams first: their threads use the detectors closed below
            reg.close_all()
        for det in self._detectors:
            det.close()
        self._detectors.clear()

    def __enter__(self) -> "Analyzer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
