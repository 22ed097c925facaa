"""One camera as a Ray actor: capture, detection, tracking, its event log and recording,
on the node near its source; only each frame's crops leave it (to the ensemble
deployment), and what the HTTP layer shows is pulled by the driver (``drain``).

Lifetime: ``__init__`` keeps the settings only; the driver calls ``start(generation,
resume_from)``. When Ray restarts a dead actor (``max_restarts``) it runs ``__init__``
again and the driver, seeing a fresh actor (``drain()["started"]`` false), starts it with
the next generation: a file resumes at the first frame the driver had not received, a live
stream simply reopens. A restarted generation writes its own segment of the event log
and recording (``door.jsonl`` then ``door.restart1.jsonl``): the killed generation's
files are never reopened, so nothing it wrote is overwritten; its event log ends at its
last complete line, a segment starts with ``run_started`` then ``stream_restored``
(``reason: camera actor restarted``).
"""
from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections import deque
from pathlib import Path
from typing import Callable

from uar_stream.cluster.batcher import ServeBatcher
from uar_stream.config import SourceConfig, from_dict
from uar_stream.flow import Event, RunSummary, StreamInfo, StreamResult
from uar_stream.pipeline.analyzer import Analyzer
from uar_stream.pipeline.sinks import EventLogSink, outputs_for
from uar_stream.pipeline.sources import Source, open_source, redact
from uar_stream.pipeline.stream import FrameStream, StreamHandle
from uar_stream.serve.batcher import BatchedEngine
from uar_stream.serve.cameras import CameraConfig
from uar_stream.serve.sources import file_opener

#: Results a driver that stopped pulling can fall behind by (the oldest go; files keep all).
MAX_PENDING = 2000


def segment_path(path: str | None, generation: int) -> str | None:
    """The output file of a generation: ``path`` itself first, then ``NAME.restartN.EXT``."""
    if path is None or generation == 0:
        return path
    p = Path(path)
    return str(p.with_name(f"{p.stem}.restart{generation}{p.suffix}"))


class ResumeSource(Source):
    """A file source that starts ``skip`` frames in (read and dropped: the frame clock,
    the timestamps, continue where the dead generation stopped)."""

    def __init__(self, inner: Source, skip: int):
        self._inner = inner
        self.spec, self.is_live, self.fps = inner.spec, inner.is_live, inner.fps
        self.frame_count, self.size = max(0, inner.frame_count - skip), inner.size
        # A real-time-paced file (serve's PacedLoopSource) skips unpaced, then paces again.
        paced = getattr(inner, "realtime", False)
        if paced:
            inner.realtime = False
        for _ in range(skip):
            if inner.read() is None:
                break
        if paced:
            inner.realtime = True

    def read(self):
        """The next frame of the inner source."""
        return self._inner.read()

    def close(self) -> None:
        """Release the inner source."""
        self._inner.close()


def resume_opener(base: Callable | None, skip: int) -> Callable | None:
    """An opener that skips ``skip`` frames on its first open only (a reconnect reopens plainly)."""
    if skip <= 0:
        return base
    opener = base or open_source
    left = [skip]

    def open_(spec: str, config: SourceConfig) -> Source:
        n, left[0] = left[0], 0
        src = opener(spec, config)
        return ResumeSource(src, n) if n else src
    return open_


class Publisher:
    """A sink keeping what the driver pulls: results since the last ``drain`` (pixels only on
    the newest: the driver's live view draws that one), the stream info and final summary."""

    def __init__(self) -> None:
        self.info: StreamInfo | None = None
        self.summary: RunSummary | None = None
        self.dropped = 0
        self._results: deque[StreamResult] = deque()
        self._lock = threading.Lock()

    def open(self, info: StreamInfo) -> None:
        """Remember the description (sent with the first drain)."""
        self.info = info

    def write(self, result: StreamResult) -> None:
        """Queue the result for the driver."""
        with self._lock:
            self._results.append(result)
            while len(self._results) > MAX_PENDING:
                self._results.popleft()
                self.dropped += 1

    def close(self, summary: RunSummary) -> None:
        """Keep the summary (its final events included)."""
        self.summary = summary

    def take(self) -> list[StreamResult]:
        """The results since the last call, images stripped from all but the newest."""
        with self._lock:
            out, self._results = list(self._results), deque()
        return [r if i == len(out) - 1 else
                dataclasses.replace(r, frame=dataclasses.replace(r.frame, image=None))
                for i, r in enumerate(out)]


class RestartNote:
    """A sink after the event log of a restarted generation: logs ``stream_restored``
    (reason ``camera actor restarted``) right after its ``run_started``."""

    def __init__(self, log: EventLogSink | None, event: Event):
        self.log_sink, self.event = log, event

    def open(self, info: StreamInfo) -> None:
        """Write the note into the segment's event log."""
        if self.log_sink is not None and self.log_sink.log is not None:
            self.log_sink.log.write(self.event)

    def write(self, result: StreamResult) -> None:
        """Nothing per frame."""

    def close(self, summary: RunSummary) -> None:
        """Nothing at the end."""


class CameraActor:
    """The camera's pipeline in its own process (wrapped by ``ray.remote`` in service.py).

    ``camera``: its CameraConfig; ``analyzer``: its analyzer config as a dict; ``app``:
    the Serve application of the ensemble; ``max_faces``: the deployment's batch size."""

    def __init__(self, camera: CameraConfig, analyzer: dict, app: str, max_faces: int):
        self.camera, self.analyzer_dict, self.app, self.max_faces = camera, analyzer, app, max_faces
        self.publisher = Publisher()
        self.generation = 0
        self.batcher: ServeBatcher | None = None
        self.stream: FrameStream | None = None
        self.handle: StreamHandle | None = None
        self.analyzer: Analyzer | None = None

    def start(self, generation: int = 0, resume_from: int = 0) -> dict:
        """Open the source and the outputs of this generation and start analysing. Returns
        {"info", "note"} (the restart event it logged, None for generation 0). A bad source
        or output raises its one-line UarError."""
        from ray import serve  # the actor runs inside Ray: the import is there

        cam, config = self.camera, from_dict(self.analyzer_dict)
        handle = serve.get_app_handle(self.app)
        name, members, classes = handle.describe.remote().result()
        self.batcher = ServeBatcher(handle, self.max_faces)
        self.analyzer = Analyzer(config, engine=BatchedEngine(self.batcher, cam.id, name, members, classes))
        self.generation = generation
        outputs = outputs_for(config, output=segment_path(cam.record, generation),
                              events=segment_path(cam.events, generation), summary=False)
        note = None
        sinks = [self.publisher, *outputs]
        if generation:
            note = Event("stream_restored", {"source": redact(cam.source), "reason": "camera actor restarted",
                                             "restarts": generation, "resumed_at_frame": resume_from})
            log = next((s for s in outputs if isinstance(s, EventLogSink)), None)
            sinks.append(RestartNote(log, note))
        opener = None if cam.is_live else file_opener(cam.loop, cam.realtime)
        opener = opener if cam.is_live else resume_opener(opener, resume_from)
        self.stream = FrameStream(self.analyzer, cam.source, config.source,
                                  tracker=self.analyzer.new_tracker() if config.tracking.enabled else None,
                                  sinks=sinks, describe=self.analyzer.describe(), opener=opener)
        self.handle = StreamHandle(self.stream, lambda r: None)
        return {"info": self.stream.info.to_dict(), "note": None if note is None else note.to_dict()}

    def drain(self) -> dict:
        """What happened since the last call: results (newest with pixels), whether the
        stream still runs, its final summary once it ended, counters and where it runs."""
        h, s = self.handle, self.stream
        running = h is not None and h.running
        summary = self.publisher.summary if h is not None and not running else None
        error = None
        if h is not None and h.error is not None:
            error = str(h.error).splitlines()[0] if str(h.error) else type(h.error).__name__
        return {"started": h is not None, "running": running, "results": self.publisher.take(),
                "summary": summary, "error": error or (summary.error if summary else None),
                "dropped": s.dropped if s else 0, "reconnects": s.reader.reconnects if s else 0,
                # the reader holds no source while a lost live stream is being reopened
                "reconnecting": running and s is not None and s.reader.source is None,
                "batch": self.batcher.stats() if self.batcher else None, "generation": self.generation,
                "where": self.where()}

    def where(self) -> dict:
        """The node and process this actor runs in."""
        import ray

        return {"node_id": ray.get_runtime_context().get_node_id(), "pid": os.getpid()}

    def stop(self, timeout: float = 10.0, interrupted: bool = False) -> dict:
        """End the stream and finalise its outputs (run_ended last); the last drain.
        ``interrupted``: the service was asked to stop (a signal), recorded in the summary."""
        if interrupted and self.handle is not None and self.handle.running and self.stream is not None:
            self.stream.summary.interrupted = True
        if self.handle is not None:
            self.handle.stop(timeout)
        elif self.stream is not None:
            self.stream.close()
        deadline = time.monotonic() + timeout
        while self.handle is not None and self.handle.running and time.monotonic() < deadline:
            time.sleep(0.05)
        out = self.drain()
        if self.analyzer is not None:
            self.analyzer.close()
        return out
