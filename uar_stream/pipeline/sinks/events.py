"""The event log sink: one JSON object per line, flushed per event (a crash loses nothing).

Every line has ``event`` (kind) and ``time`` (unix seconds when it happened). Kinds:
run_started, face, run_ended, and in live or tracked runs stream_lost / stream_restored /
track_started / route_changed / track_ended (docs/events.md has every field).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import IO

from uar_stream.config import EventsConfig
from uar_stream.errors import SinkError
from uar_stream.flow import Event, FaceResult, RunSummary, StreamInfo, StreamResult
from uar_stream.pipeline.tracking import iou_matrix


class EventLog:
    """A JSONL file of :class:`Event` records (or only a count, without a path)."""

    def __init__(self, path: str | Path | None):
        self.path = Path(path) if path else None
        self._f: IO[str] | None = None
        if self.path is not None:
            try:
                if self.path.parent and not self.path.parent.exists():
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                self._f = open(self.path, "w", encoding="utf-8")
            except OSError as e:
                raise SinkError(f"cannot write events file {self.path}: {e.strerror or e}") from None
        self.count = 0

    def write(self, event: Event) -> dict:
        """Append one event; returns its record."""
        rec = event.to_dict()
        if self._f is not None:
            self._f.write(json.dumps(rec, separators=(",", ":")) + "\n")
            self._f.flush()
        self.count += 1
        return rec

    def close(self) -> None:
        """Close the file (idempotent)."""
        if self._f is not None:
            self._f.close()
            self._f = None

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class FaceEventPolicy:
    """Decides which face results become ``face`` events (config ``events.faces``).

    on_change: a face whose route or label differs from the same face in the previous
    frame (its track, or without tracking the face at its place: IoU >= 0.3).
    """

    def __init__(self, mode: str, every_n: int):
        self.mode, self.every_n = mode, every_n
        self._prev: list[FaceResult] = []

    def select(self, frame_index: int, faces: list[FaceResult]) -> list[int]:
        """Indexes of ``faces`` to log for this frame."""
        if self.mode == "off":
            chosen = []
        elif self.mode == "every_frame":
            chosen = list(range(len(faces)))
        elif self.mode == "every_n":
            chosen = list(range(len(faces))) if frame_index % self.every_n == 0 else []
        else:
            chosen = [i for i, f in enumerate(faces) if self._changed(i, f, faces)]
        self._prev = faces
        return chosen

    def _changed(self, i: int, face: FaceResult, faces: list[FaceResult]) -> bool:
        before = None
        if face.track_id is not None:
            before = next((p for p in self._prev if p.track_id == face.track_id), None)
        elif self._prev:
            iou = iou_matrix([face.box], [p.box for p in self._prev])[0]
            k = int(iou.argmax())
            before = self._prev[k] if iou[k] >= 0.3 else None
        return before is None or before.route != face.route or before.label != face.label


class EventLogSink:
    """Writes run_started, each result's events and chosen face events, then the events
    left at the end and run_ended (always the last line, however the run ended)."""

    def __init__(self, path: str | Path | None, config: EventsConfig | None = None):
        self.config = config or EventsConfig()
        self._path = Path(path) if path else None
        self.log: EventLog | None = None
        self.policy = FaceEventPolicy(self.config.faces, self.config.every_n)

    @property
    def path(self) -> Path | None:
        """The JSONL file (None: events are only counted)."""
        return self._path

    def open(self, info: StreamInfo) -> None:
        """Create the file (SinkError if it cannot be written) and log ``run_started``."""
        self.log = EventLog(self._path)
        self.log.write(Event("run_started", info.to_dict()))

    def write(self, result: StreamResult) -> None:
        """Log the result's events, then its face events."""
        assert self.log is not None, "open() first"
        for ev in result.events:
            self.log.write(ev)
        frame = result.frame
        for i in self.policy.select(frame.index, result.faces):
            self.log.write(Event("face", {"frame": frame.index, "t": round(frame.timestamp_s, 3),
                                          "face": i,
                                          **result.faces[i].to_dict(probs=self.config.probs)}))

    def close(self, summary: RunSummary) -> None:
        """Log the events left at the end, then ``run_ended``; close the file."""
        assert self.log is not None, "open() first"
        try:
            for ev in summary.final_events:
                self.log.write(ev)
            self.log.write(Event("run_ended", summary.to_dict()))
        finally:
            self.log.close()
