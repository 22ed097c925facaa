"""One camera of the service: its own capture, detection, tracker and sinks, on its own
threads (a :class:`~uar_stream.pipeline.stream.FrameStream` run by a StreamHandle); only
the engine call goes through the shared batcher. A camera that fails ends alone."""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable

from uar_stream.config import AnalyzerConfig
from uar_stream.flow import Event, StreamResult
from uar_stream.pipeline.analyzer import Analyzer
from uar_stream.pipeline.sinks import outputs_for
from uar_stream.pipeline.sources import redact
from uar_stream.pipeline.stream import FrameStream, StreamHandle
from uar_stream.serve.batcher import BatchedEngine, Batcher
from uar_stream.serve.cameras import CameraConfig
from uar_stream.serve.hub import Hub
from uar_stream.serve.sources import file_opener
from uar_stream.serve.view import FeedSink, LiveView

#: starting: opened, no frame yet; running; reconnecting: a live stream is lost and being
#: reopened; ended: a file reached its end; failed: an error ended it; stopped: removed.
STATES = ("starting", "running", "reconnecting", "ended", "failed", "stopped")


class Camera:
    """Opens the source at once (a bad source raises SourceError here, before any output
    file is touched); ``start()`` runs it; ``stop()`` finalises its outputs."""

    def __init__(self, config: CameraConfig, analyzer_config: AnalyzerConfig, batcher: Batcher,
                 engine_info: tuple[str, int, int], events: Hub,
                 on_result: Callable[[str, StreamResult], None], jpeg_quality: int = 80):
        self.config, self.id = config, config.id
        if config.realtime and not config.is_live and analyzer_config.source.buffer_policy == "auto":
            # a paced file stands in for a camera: the newest frame wins, as for live sources
            analyzer_config = dataclasses.replace(
                analyzer_config, source=dataclasses.replace(analyzer_config.source,
                                                            buffer_policy="newest_only"))
        self.source = redact(config.source)
        self._batcher = batcher
        name, members, classes = engine_info
        self.analyzer = Analyzer(analyzer_config,
                                 engine=BatchedEngine(batcher, config.id, name, members, classes))
        self.view = LiveView(analyzer_config, jpeg_quality)
        sinks = [self.view, FeedSink(events, config.id, analyzer_config),
                 *outputs_for(analyzer_config, output=config.record, events=config.events, summary=False)]
        tracking = analyzer_config.tracking.enabled
        opener = None if config.is_live else file_opener(config.loop, config.realtime)
        self.stream = FrameStream(self.analyzer, config.source, analyzer_config.source,
                                  tracker=self.analyzer.new_tracker() if tracking else None,
                                  sinks=sinks, describe=self.analyzer.describe(), opener=opener)
        self._on_result = on_result
        self._handle: StreamHandle | None = None
        self._stopped = False
        self.started_at = time.time()

    def start(self) -> None:
        """Start the camera's threads."""
        self._batcher.register(self.id)
        self._handle = StreamHandle(self.stream, self._result, self._final)

    def _result(self, result: StreamResult) -> None:
        self._on_result(self.id, result)

    def _final(self, events: list[Event]) -> None:
        self._batcher.unregister(self.id)

    @property
    def state(self) -> str:
        """One of :data:`STATES`."""
        h = self._handle
        if h is not None and not h.running:
            if self._stopped:
                return "stopped"
            return "failed" if h.error is not None or self.stream.summary.error else "ended"
        # The reader drops its source when a live stream is lost and holds a new one once it
        # is restored (the stream_lost event itself only travels with the next frame).
        if self.view.frames and self.stream.reader.source is None:
            return "reconnecting"
        return "running" if self.view.frames else "starting"

    @property
    def error(self) -> str | None:
        """What ended the camera abnormally (one line), None otherwise."""
        h = self._handle
        if h is not None and h.error is not None:
            return str(h.error).splitlines()[0] if str(h.error) else type(h.error).__name__
        return self.stream.summary.error

    def status(self) -> dict:
        """The camera's line in ``GET /api/streams`` (source redacted)."""
        return status_line(self, self.stream.dropped, self.stream.reader.reconnects)

    def stop(self, timeout: float = 10.0, interrupted: bool = False) -> None:
        """End the stream and finalise its outputs (run_ended in its event log);
        ``interrupted``: record that the service was asked to stop (a signal)."""
        self._stopped = self._stopped or (self._handle is not None and self._handle.running)
        if interrupted and self._stopped:
            self.stream.summary.interrupted = True
        if self._handle is not None:
            self._handle.stop(timeout)
        else:
            self.stream.close()
        self._batcher.unregister(self.id)
        self.analyzer.close()


def status_line(cam: Any, dropped: int, reconnects: int) -> dict:
    """The keys of a camera's line in ``GET /api/streams`` that every kind of camera has
    (this process's :class:`Camera`, the cluster's remote one): what its ``view`` counted,
    its id, redacted source, state and error, its outputs; ``dropped`` and ``reconnects``
    from wherever its stream runs."""
    p50, p95 = cam.view.latency_ms()
    return {"id": cam.id, "source": cam.source, "state": cam.state,
            "fps": round(cam.view.fps, 2) if cam.view.fps else 0.0,
            "frames": cam.view.frames, "faces": cam.view.faces, "routes": dict(cam.view.routes),
            "dropped": dropped, "latency_ms_p50": p50, "latency_ms_p95": p95,
            "reconnects": reconnects, "error": cam.error,
            "recording": cam.config.record is not None, "events_file": cam.config.events is not None}
