"""What flows between the stages, one type per arrow of the pipeline.

    source --Frame--> faces --FaceBatch--> engine --EnsembleOutput--> router --FaceResult-->
    tracker --FaceResult (with track id)--> stream --StreamResult--> sinks

Beside the frames, :class:`Event` is the one event type of every stage (capture: a lost or
restored stream; tracking: tracks that start, change route, end; the run: started, faces,
ended), and :class:`StreamInfo` / :class:`RunSummary` are what a :class:`Sink` gets when a
stream opens and closes. Nothing here imports another module of the package, so every stage
can depend on it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

import numpy as np


class Route(str, Enum):
    """What the application does with a face."""

    CONFIDENT = "confident"  # show the label
    AMBIGUOUS = "ambiguous"  # in-distribution but the expression itself is unclear: show the distribution
    OUT_OF_DISTRIBUTION = "out_of_distribution"  # unfamiliar input: reject, show no emotion


@dataclass
class Frame:
    """A decoded frame. ``index`` counts frames read; ``timestamp_s`` is the source's clock."""

    index: int
    image: np.ndarray
    timestamp_s: float
    captured_at: float  # time.perf_counter() when read (for capture-to-result latency)
    #: Live sources: the stream's own position (seconds, restarts after a reconnect); it
    #: shows how far behind real time a reader is. None for files.
    stream_pos_s: float | None = None


@dataclass
class DetectedFace:
    """One face in a frame. box: (x0, y0, x1, y1) pixels; landmarks: (6, 2) pixels."""

    box: tuple[int, int, int, int]
    score: float
    landmarks: np.ndarray


@dataclass
class FaceBatch:
    """The faces of one frame, detected and aligned. crops: uint8 (N, S, S)."""

    faces: list[DetectedFace]
    crops: np.ndarray
    frame_shape: tuple[int, int]


@dataclass
class EnsembleOutput:
    """Per-face ensemble prediction; uncertainties in nats.

    mean_probs (B, C) (calibrated); total, aleatoric, epistemic (B,); member_probs (B, M, C) (at
    the decomposition temperature); density (B,): the feature-density OOD score (higher is less
    familiar), None for a model without a density file.
    """

    mean_probs: np.ndarray
    total: np.ndarray
    aleatoric: np.ndarray
    epistemic: np.ndarray
    member_probs: np.ndarray
    density: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.mean_probs)

    @classmethod
    def empty(cls, members: int, num_classes: int, density: bool = False) -> EnsembleOutput:
        """The output for zero faces (with an empty ``density`` when ``density``)."""
        z = np.zeros((0,), np.float32)
        return cls(np.zeros((0, num_classes), np.float32), z, z.copy(), z.copy(),
                   np.zeros((0, members, num_classes), np.float32), z.copy() if density else None)

    @classmethod
    def concat(cls, parts: list[EnsembleOutput]) -> EnsembleOutput:
        """Rows of several outputs, in order (``density`` kept when every part has it)."""
        arrays = [np.concatenate([getattr(p, f) for p in parts]) for f in
                  ("mean_probs", "total", "aleatoric", "epistemic", "member_probs")]
        dens = None
        if parts and all(p.density is not None for p in parts):
            dens = np.concatenate([p.density for p in parts])
        return cls(*arrays, density=dens)


@dataclass
class FaceResult:
    """One face in one frame.

    box: (x0, y0, x1, y1) pixels; landmarks (6, 2) pixels; probs (C,) ensemble mean;
    aleatoric / epistemic / total in nats; route decides what the app shows; ``reason``
    says why a face was routed ``out_of_distribution`` (``epistemic``: the model's own gate;
    other gates add their own names), None otherwise.
    """

    box: tuple[int, int, int, int]
    landmarks: np.ndarray
    detection_score: float
    probs: np.ndarray
    label: str
    confidence: float
    aleatoric: float
    epistemic: float
    total: float
    route: Route
    classes: tuple[str, ...] = field(repr=False, default=())
    track_id: int | None = None
    reason: str | None = None
    #: The feature-density OOD score (higher is less familiar); None without a density model.
    density: float | None = None

    def top(self, k: int = 2) -> list[tuple[str, float]]:
        """The k most probable classes with their probabilities, most probable first."""
        order = np.argsort(-self.probs)[:k]
        return [(self.classes[i], float(self.probs[i])) for i in order]

    def to_dict(self, probs: bool = True) -> dict:
        """JSON-ready fields (the ``face`` event's body); ``probs`` adds the distribution."""
        d = {
            "box": [int(v) for v in self.box],
            "label": self.label,
            "confidence": round(self.confidence, 4),
            "route": self.route.value,
            "aleatoric": round(self.aleatoric, 4),
            "epistemic": round(self.epistemic, 4),
            "total": round(self.total, 4),
            "detection_score": round(self.detection_score, 3),
        }
        if self.track_id is not None:
            d["track_id"] = self.track_id
        if self.reason is not None:
            d["reason"] = self.reason
        if self.density is not None:
            d["density"] = round(self.density, 4)
        if probs:
            d["probs"] = {c: round(float(p), 4) for c, p in zip(self.classes, self.probs, strict=False)}
        return d


@dataclass
class Event:
    """Something that happened: ``kind`` (e.g. stream_lost, track_started, face), ``time``
    (unix seconds when it happened, not when it was written) and the kind's own fields."""

    kind: str
    fields: dict[str, Any] = field(default_factory=dict)
    time: float = field(default_factory=time.time)

    def to_dict(self) -> dict:
        """The JSONL record: ``{"event": kind, "time": ..., **fields}``."""
        return {"event": self.kind, "time": round(self.time, 3), **self.fields}


@dataclass
class StreamResult:
    """One analysed frame. ``events``: every event since the previous result, in order.
    ``latency_ms``: capture to result; ``fps``: frames analysed per second of wall time
    over the last second or so (None for the first frame)."""

    frame: Frame
    faces: list[FaceResult]
    events: list[Event] = field(default_factory=list)
    latency_ms: float = 0.0
    fps: float | None = None

    @property
    def image(self) -> np.ndarray:
        """The frame's pixels (as read; gray, BGR or BGRA)."""
        return self.frame.image

    @property
    def index(self) -> int:
        """The frame's index in its source."""
        return self.frame.index


@dataclass
class StreamInfo:
    """What a sink learns when a stream opens (the ``run_started`` event's body)."""

    source: str  # credentials redacted
    live: bool
    width: int
    height: int
    fps: float
    frame_count: int
    buffer_policy: str
    pipelined: bool
    tracking: bool
    config_hash: str = ""
    model_id: str = ""
    model: str = ""
    backend: str = ""
    thresholds: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready fields, in a stable order."""
        return {"source": self.source, "live": self.live, "width": self.width,
                "height": self.height, "fps": round(self.fps, 3), "frame_count": self.frame_count,
                "buffer_policy": self.buffer_policy, "pipelined": self.pipelined,
                "tracking": self.tracking, "config_hash": self.config_hash,
                "model_id": self.model_id, "model": self.model, "backend": self.backend,
                "thresholds": self.thresholds}


@dataclass
class RunSummary:
    """What a stream did, handed to every sink when it closes.

    ``final_events``: events after the last result (tracks ended at the end, a loss before a
    failure), for sinks that log events. ``error``: what ended the stream abnormally.
    """

    source: str
    frames: int = 0
    faces: int = 0
    routes: dict = field(default_factory=lambda: {r.value: 0 for r in Route})
    #: Labels shown: one count per confident face-frame (only confident faces show a label).
    labels: dict = field(default_factory=dict)
    #: Ambiguous face-frames by the two classes shown ("happiness | neutral", most probable first).
    ambiguous_pairs: dict = field(default_factory=dict)
    #: Rejected face-frames by reason (epistemic, pose, too_small, too_dark, blurred, ...).
    rejected: dict = field(default_factory=dict)
    dropped_frames: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    latency_ms_p50: float | None = None
    latency_ms_p95: float | None = None
    reconnects: int = 0
    tracks: int | None = None
    error: str | None = None
    final_events: list[Event] = field(default_factory=list, repr=False)

    @property
    def fps(self) -> float:
        """Frames analysed per second over the whole run."""
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def add(self, result: StreamResult) -> None:
        """Count one analysed frame."""
        self.frames += 1
        self.faces += len(result.faces)
        for r in result.faces:
            self.routes[r.route.value] += 1
            if r.route is Route.CONFIDENT:
                self.labels[r.label] = self.labels.get(r.label, 0) + 1
            elif r.route is Route.AMBIGUOUS:
                pair = " | ".join(c for c, _ in r.top(2))
                self.ambiguous_pairs[pair] = self.ambiguous_pairs.get(pair, 0) + 1
            else:
                why = r.reason or "epistemic"
                self.rejected[why] = self.rejected.get(why, 0) + 1

    def to_dict(self) -> dict:
        """JSON-ready fields (the ``run_ended`` event's body and ``--summary-json``)."""
        d = {"source": self.source, "frames": self.frames, "faces": self.faces,
             "routes": self.routes, "labels": self.labels, "ambiguous_pairs": self.ambiguous_pairs,
             "rejected": self.rejected, "fps": round(self.fps, 2),
             "dropped_frames": self.dropped_frames, "seconds": round(self.seconds, 2),
             "interrupted": self.interrupted, "latency_ms_p50": self.latency_ms_p50,
             "latency_ms_p95": self.latency_ms_p95, "reconnects": self.reconnects,
             "tracks": self.tracks}
        if self.error is not None:
            d["error"] = self.error
        return d


class Sink(Protocol):
    """An output of a stream: opened once, handed every result in order, closed once with
    the summary (however the stream ended). Pass sinks to ``Analyzer.stream(sinks=[...])``."""

    def open(self, info: StreamInfo) -> None:
        """The stream is open; nothing has been analysed yet."""

    def write(self, result: StreamResult) -> None:
        """One analysed frame, in frame order."""

    def close(self, summary: RunSummary) -> None:
        """The stream has ended; finalise the output."""
