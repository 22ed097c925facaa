"""Analyzer: composes the stages (faces -> engine -> uncertainty -> router), and opens
managed streams that add the tracker and the sinks. The CLI and embedding apps use only
this class."""
from __future__ import annotations

import threading
import weakref
from pathlib import Path
from typing import Any, Callable, Sequence

import cv2
import numpy as np

from uar_stream.backends import Engine, create_engine
from uar_stream.config import AnalyzerConfig, SourceConfig, load_config
from uar_stream.errors import ModelError
from uar_stream.flow import Event, FaceBatch, FaceResult, Sink, StreamResult
from uar_stream.model.locate import resolve_model_path
from uar_stream.model.preprocess import INPUT_SIZE, prepare_batch
from uar_stream.model.store import model_id, read_manifest
from uar_stream.pipeline.faces import FaceDetector, align_face, to_bgr
from uar_stream.pipeline.overlay import Overlay
from uar_stream.pipeline.quality import QualityGates
from uar_stream.pipeline.routing import router_for
from uar_stream.pipeline.sources import as_image, warn_detection_limits
from uar_stream.pipeline.stream import FrameStream, StreamHandle
from uar_stream.pipeline.tracking import FaceTracker


class Analyzer:
    """Frame in, list of :class:`FaceResult` out.

    >>> with Analyzer.from_config("configs/default.yaml") as an:
    ...     results = an.analyze(frame_bgr)
    ...     an.draw(frame_bgr, results)

    ``engine``: an engine to use instead of building one from ``config.engine`` (tests pass
    a slow or fake one here). Safe to call from several threads: each thread gets its own
    face detector, and the engine call is serialised.
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
                                              e.max_batch, e.threads, e.flip_tta)
        self.classes = tuple(self.manifest.classes)
        self.router = router_for(config.routing, self.manifest.density is not None, self.model_dir)
        self.overlay = Overlay(config.overlay, config.routing)
        self.quality = QualityGates(config.quality)
        self._local = threading.local()
        self._detectors: list[FaceDetector] = []
        self._engine_lock = threading.Lock()
        self._streams: weakref.WeakSet[FrameStream] = weakref.WeakSet()
        self._streams_lock = threading.Lock()
        self._closed = False
        self._warned: set[str] = set()  # detection-limit warnings already given

    @classmethod
    def from_config(cls, source: str | Path | dict | AnalyzerConfig | None = None,
                    **overrides: Any) -> Analyzer:
        """Build from a YAML path, a dict or a config; ``overrides`` use dotted keys with
        '__' for the dot, e.g. ``routing__tau_epistemic=0.1``."""
        return cls(load_config(source, {k.replace("__", "."): v for k, v in overrides.items()}))

    # -- stages (also what a FrameStream calls: the FaceStages protocol) --------------------
    def prepare_thread(self) -> None:
        """Build the calling thread's face detector now, if it has none, and clear what it
        remembers of earlier frames (a stream starts fresh even on a reused thread)."""
        self.thread_detector().reset()

    def release_thread(self) -> None:
        """Close the calling thread's face detector (stream threads call this on exit)."""
        det = getattr(self._local, "detector", None)
        if det is not None:
            self._local.detector = None
            try:
                self._detectors.remove(det)
            except ValueError:
                pass
            det.close()

    def detect(self, frame: np.ndarray, near=None) -> FaceBatch:
        """Detect and align every face of a frame (gray, BGR or BGRA; uint8, uint16 or float
        in 0..1). Anything else raises :class:`~uar_stream.errors.InputError`. Never silently
        empty: a frame too small for any face, or more faces than ``detector.max_faces`` (the
        detector's first are kept: BlazeFace's by score, then the other models'), logs a warning
        (once per Analyzer and kind). ``near``: boxes
        of followed faces: search only around them (streams between whole-frame passes)."""
        bgr = to_bgr(as_image(frame))
        faces = self.thread_detector().detect(bgr, near)
        warn_detection_limits(bgr.shape, len(faces), self.config.detector, self._warned)
        # the detector's order, not the score: BlazeFace's faces by score, then YuNet's and MTCNN's,
        # whose scores are on other scales (an MTCNN 0.99 is not a better face than a BlazeFace 0.9)
        faces = faces[: self.config.detector.max_faces]
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
                aleatoric, epistemic = float(out.aleatoric[i]), float(out.epistemic[i])
                density = None if out.density is None else float(out.density[i])
                route, why = self.router.decide(aleatoric, epistemic, density)
                route, why = self.quality.gate(f, b.crops[len(frame_res)], route, why)
                frame_res.append(FaceResult(
                    box=f.box, landmarks=f.landmarks, detection_score=f.score, probs=probs,
                    label=self.classes[k], confidence=float(probs[k]), aleatoric=aleatoric,
                    epistemic=epistemic, total=float(out.total[i]),
                    route=route, classes=self.classes, reason=why, density=density))
                i += 1
            results.append(frame_res)
        return results

    def analyze(self, frame: np.ndarray) -> list[FaceResult]:
        """Detect, align, classify and route every face in one frame (input as for
        :meth:`detect`; wrong input raises :class:`~uar_stream.errors.InputError`)."""
        return self.classify([self.detect(frame)])[0]

    def draw(self, frame: np.ndarray, results: list[FaceResult], fps: float | None = None) -> np.ndarray:
        """Overlay the results on a BGR copy of the frame."""
        out = to_bgr(frame).copy()
        if self.config.overlay.enabled:
            self.overlay.annotate(out, results, fps)
        return out

    # -- streams (live sources, kiosk embedding) -------------------------------------------
    def new_tracker(self) -> FaceTracker:
        """A face tracker (ids, smoothing, hysteresis; config ``tracking``) for one stream."""
        return FaceTracker(self.config.tracking, self.router, self.classes)

    def stream(self, source: str | int | Path, on_result: Callable[[StreamResult], None] | None = None,
               *, sinks: Sequence[Sink] = (), pipelined: bool | None = None,
               tracking: bool | None = None, config: SourceConfig | None = None,
               on_events: Callable[[list[Event]], None] | None = None) -> FrameStream | StreamHandle:
        """Analyse a file, webcam index or stream URL as a managed stream.

        Without ``on_result``: a :class:`~uar_stream.pipeline.stream.FrameStream` to iterate
        in the caller's thread (``for r in an.stream(0): r.faces, r.image``). With it: the
        stream runs on a background thread and calls ``on_result(r)`` per frame; returns a
        :class:`~uar_stream.pipeline.stream.StreamHandle` (``stop()``, ``join()``, ``error``),
        and ``on_events`` gets the events left at the end.
        ``sinks``: outputs (:class:`~uar_stream.flow.Sink`) opened with the stream, handed
        every result and closed with its summary. ``pipelined``, ``tracking`` override the
        config; ``config`` replaces the ``source`` section. Closing the stream, or this
        Analyzer, stops its threads, releases the source and closes the sinks.
        """
        src_cfg = config or self.config.source
        use_tracking = self.config.tracking.enabled if tracking is None else tracking
        s = FrameStream(self, source, src_cfg, tracker=self.new_tracker() if use_tracking else None,
                        sinks=sinks, describe=self.describe(), pipelined=pipelined,
                        detect_every=self.config.tracking.detect_every,
                        classify_every=self.config.tracking.classify_every,
                        follow_every=self.config.tracking.follow_every)
        with self._streams_lock:
            self._streams.add(s)
        return s if on_result is None else StreamHandle(s, on_result, on_events)

    def run_in_background(self, source: str | int | Path, on_result: Callable[[StreamResult], None],
                          **options: Any) -> StreamHandle:
        """``stream(source, on_result=...)``: analyse on a background thread."""
        return self.stream(source, on_result, **options)

    def describe(self) -> dict:
        """The model's side of a stream's description (see :class:`~uar_stream.flow.StreamInfo`)."""
        r = self.config.routing
        return {"config_hash": self.config.digest(), "model_id": self.model_id,
                "model": str(self.model_dir), "backend": self.engine.name,
                "thresholds": {"tau_epistemic": r.tau_epistemic, "tau_aleatoric": r.tau_aleatoric}}

    # -- lifetime -------------------------------------------------------------------------
    def close(self) -> None:
        """Close open streams, then the detectors (idempotent)."""
        if self._closed:
            return
        self._closed = True
        with self._streams_lock:
            streams = list(self._streams)
        for s in streams:  # streams first: their threads use the detectors closed below
            try:
                s.close()
            except Exception:  # noqa: BLE001 - a sink's failure belongs to its stream's owner
                pass
        for det in self._detectors:
            det.close()
        self._detectors.clear()

    def __enter__(self) -> Analyzer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def thread_detector(self) -> FaceDetector:
        """The calling thread's face detector, built on first use (MediaPipe graphs are not
        shared between threads)."""
        det = getattr(self._local, "detector", None)
        if det is None:
            det = FaceDetector.from_config(self.config.detector)
            self._local.detector = det
            self._detectors.append(det)
        return det
