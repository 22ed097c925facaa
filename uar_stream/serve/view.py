"""Per-camera sinks for the service: the live view (latest frame, counts, timelines) and
the event feed (the same events as the camera's JSONL log, published with its id)."""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

import cv2
import numpy as np

from uar_stream.config import AnalyzerConfig
from uar_stream.flow import Event, Route, RunSummary, StreamInfo, StreamResult
from uar_stream.pipeline.overlay import Overlay
from uar_stream.pipeline.sinks import FrameDrawer
from uar_stream.pipeline.sinks.events import FaceEventPolicy
from uar_stream.serve.hub import Hub

#: Track route timelines keep this many tracks per camera (the newest).
MAX_TRACKS = 50


@dataclass
class CameraEvent:
    """An event of one camera, as published on the feed."""

    camera: str
    record: dict  # Event.to_dict()

    def to_dict(self) -> dict:
        """The feed's JSON: the event record with ``camera`` first."""
        return {"camera": self.camera, **self.record}


@dataclass
class TrackTimeline:
    """Which route a track had when: ``segments`` [(t, route)], each route until the next."""

    track_id: int
    segments: list[tuple[float, str]] = field(default_factory=list)
    ended_t: float | None = None

    def to_dict(self) -> dict:
        """JSON-ready."""
        return {"track_id": self.track_id, "segments": [[t, r] for t, r in self.segments],
                "ended": self.ended_t}


class LiveView:
    """A sink keeping what the dashboard and the API show: the latest result (as a JPEG on
    demand, drawn once per frame however many viewers), route counts, a latency window,
    per-track route timelines. Readers on other threads use the public methods."""

    def __init__(self, config: AnalyzerConfig, jpeg_quality: int = 80, latency_window: int = 300):
        overlay = Overlay(config.overlay, config.routing) if config.overlay.enabled else None
        self._drawer = FrameDrawer(overlay)
        self.jpeg_quality = jpeg_quality
        self.info: StreamInfo | None = None
        self.summary: RunSummary | None = None
        self.seq = 0  # results seen; a viewer waits for it to change
        self.frames = self.faces = 0
        self.routes = {r.value: 0 for r in Route}
        self.fps: float | None = None
        self._latest: StreamResult | None = None
        self._latency: deque[float] = deque(maxlen=latency_window)
        self._tracks: dict[int, TrackTimeline] = {}
        self._jpeg: tuple[int, bytes] | None = None
        self._cond = threading.Condition()

    # -- the Sink protocol ------------------------------------------------------------
    def open(self, info: StreamInfo) -> None:
        """Remember the stream's description."""
        self.info = info

    def write(self, result: StreamResult) -> None:
        """Keep the result as the latest; count it."""
        with self._cond:
            self._latest = result
            self.seq += 1
            self.frames += 1
            self.faces += len(result.faces)
            for f in result.faces:
                self.routes[f.route.value] += 1
            if result.fps is not None:  # none for the first burst of a stream: keep the last rate
                self.fps = result.fps
            self._latency.append(result.latency_ms)
            for ev in result.events:
                self._on_event(ev)
            self._cond.notify_all()

    def close(self, summary: RunSummary) -> None:
        """Keep the summary; wake the viewers."""
        with self._cond:
            for ev in summary.final_events:
                self._on_event(ev)
            self.summary = summary
            self._cond.notify_all()

    # -- readers ----------------------------------------------------------------------
    def wait_newer(self, seq: int, timeout: float) -> int:
        """Wait up to ``timeout`` s for a result after ``seq``; the current seq."""
        with self._cond:
            if self.seq == seq and self.summary is None:
                self._cond.wait(timeout)
            return self.seq

    def jpeg(self) -> tuple[int, bytes] | None:
        """(seq, JPEG of the latest frame with the overlay), None before the first frame."""
        with self._cond:
            latest, seq = self._latest, self.seq
            if self._jpeg is not None and self._jpeg[0] == seq:
                return self._jpeg
        if latest is None:
            return None
        img = self._drawer.draw(latest)
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        if not ok:
            return None
        with self._cond:
            self._jpeg = (seq, buf.tobytes())
            return self._jpeg

    def latency_ms(self) -> tuple[float | None, float | None]:
        """(p50, p95) over the last results."""
        with self._cond:
            lat = list(self._latency)
        if not lat:
            return None, None
        p50, p95 = np.percentile(lat, [50, 95])
        return round(float(p50), 2), round(float(p95), 2)

    @property
    def now_t(self) -> float | None:
        """The latest analysed frame's timestamp (the tracks' clock), None before one."""
        latest = self._latest
        return None if latest is None else round(latest.frame.timestamp_s, 3)

    def timelines(self) -> list[dict]:
        """Per-track route timelines, oldest track first."""
        with self._cond:
            return [t.to_dict() for t in self._tracks.values()]

    def _on_event(self, ev: Event) -> None:
        f = ev.fields
        if ev.kind == "track_started":
            self._tracks[f["track_id"]] = TrackTimeline(f["track_id"], [(f["t"], f["route"])])
            while len(self._tracks) > MAX_TRACKS:
                self._tracks.pop(next(iter(self._tracks)))
        elif ev.kind == "route_changed" and f["track_id"] in self._tracks:
            self._tracks[f["track_id"]].segments.append((f["t"], f["to"]))
        elif ev.kind == "track_ended" and f["track_id"] in self._tracks:
            self._tracks[f["track_id"]].ended_t = f["t"]


class FeedSink:
    """The camera's events published on ``hub`` as :class:`CameraEvent`, the same kinds as
    its JSONL log: run_started, capture and track events, ``face`` events chosen by the
    camera's ``events`` policy, the events left at the end, run_ended."""

    def __init__(self, hub: Hub, camera: str, config: AnalyzerConfig):
        self.hub, self.camera, self.config = hub, camera, config.events
        self.policy = FaceEventPolicy(self.config.faces, self.config.every_n)

    def _publish(self, event: Event) -> None:
        self.hub.publish(CameraEvent(self.camera, event.to_dict()))

    def open(self, info: StreamInfo) -> None:
        """Publish ``run_started``."""
        self._publish(Event("run_started", info.to_dict()))

    def write(self, result: StreamResult) -> None:
        """Publish the result's events, then its face events."""
        for ev in result.events:
            self._publish(ev)
        frame = result.frame
        for i in self.policy.select(frame.index, result.faces):
            self._publish(Event("face", {"frame": frame.index, "t": round(frame.timestamp_s, 3), "face": i,
                                         **result.faces[i].to_dict(probs=self.config.probs)}))

    def close(self, summary: RunSummary) -> None:
        """Publish the events left at the end, then ``run_ended``."""
        for ev in summary.final_events:
            self._publish(ev)
        self._publish(Event("run_ended", summary.to_dict()))
