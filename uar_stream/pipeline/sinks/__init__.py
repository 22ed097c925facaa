"""Outputs of a stream, each a :class:`~uar_stream.flow.Sink`: annotated video, event log,
window, summary. :func:`outputs_for` builds the set ``uar-stream run`` uses."""
from __future__ import annotations

from pathlib import Path

from uar_stream.config import AnalyzerConfig
from uar_stream.flow import Sink
from uar_stream.pipeline.overlay import Overlay
from uar_stream.pipeline.sinks.drawing import FrameDrawer
from uar_stream.pipeline.sinks.events import EventLogSink
from uar_stream.pipeline.sinks.summary import SummarySink
from uar_stream.pipeline.sinks.video import AnnotatedVideoSink
from uar_stream.pipeline.sinks.window import WindowSink

__all__ = ["AnnotatedVideoSink", "EventLogSink", "FrameDrawer", "SummarySink", "WindowSink",
           "outputs_for"]


def outputs_for(config: AnalyzerConfig, output: str | Path | None = None,
                events: str | Path | None = None, show: bool = False,
                summary: bool = True, summary_json: str | Path | None = None) -> list[Sink]:
    """The sinks for these outputs, sharing one drawer. Each creates its file when the
    stream opens, so an unwritable output fails before any analysis (a one-line SinkError)."""
    drawer = FrameDrawer(Overlay(config.overlay, config.routing) if config.overlay.enabled else None)
    sinks: list[Sink] = []
    if output:
        sinks.append(AnnotatedVideoSink(output, drawer, config.output.codec))
    log = EventLogSink(events, config.events) if events else None
    if log is not None:
        sinks.append(log)
    if show:
        sinks.append(WindowSink(drawer))
    if summary or summary_json:  # last: closed after the event log, so it sees its rotations
        named = {k: v for k, v in (("video", output), ("events", events)) if v}
        sinks.append(SummarySink(named, summary_json, show_text=summary, events=log))
    return sinks
