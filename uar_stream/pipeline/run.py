"""The run loop behind ``uar-stream run``: open a stream with its sinks, hand each result on,
close. Outputs are finalised however the run ends (end of input, Ctrl-C, SIGTERM, a stream
that cannot be restored, an error); errors are raised after that."""
from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Callable, Sequence

from uar_stream.flow import RunSummary, Sink
from uar_stream.pipeline.analyzer import Analyzer

log = logging.getLogger("uar_stream")


class StopOnSignal:
    """Ctrl-C / SIGTERM call ``on_stop`` once (the loop finishes the frame and finalises the
    outputs); a second one gives up the loop at once (KeyboardInterrupt), but never while
    ``finalising()`` is true: an interrupted finalisation (or one frame's hand-out to the
    sinks) would leave the video without its index, or the sinks disagreeing, so signals then
    are counted, and only a third one during it raises. Only on the main thread."""

    def __init__(self, on_stop: Callable[[], None],
                 finalising: Callable[[], bool] = lambda: False) -> None:
        self.stopped = False
        self._on_stop, self._finalising = on_stop, finalising
        self._late = 0  # signals received while finalising
        self._old: dict = {}

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, _frame) -> None:
        if self.stopped:
            if self._finalising():
                self._late += 1
                if self._late < 2:
                    return
            raise KeyboardInterrupt
        self.stopped = True
        self._on_stop()

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def run(analyzer: Analyzer, source: str | int | Path, sinks: Sequence[Sink] = (),
        progress: bool = True, max_frames: int = 0, pipelined: bool | None = None,
        tracking: bool | None = None) -> RunSummary:
    """Analyse a whole source into ``sinks`` (e.g. :func:`uar_stream.pipeline.sinks.outputs_for`);
    returns the summary every sink was closed with."""
    from tqdm import tqdm

    stream = analyzer.stream(source, sinks=sinks, pipelined=pipelined, tracking=tracking)
    bar = tqdm(total=stream.frame_count or None, unit="frame", disable=not progress,
               file=sys.stderr, dynamic_ncols=True)
    error: BaseException | None = None
    # the handler stays for the finalisation too, so a late Ctrl-C cannot cut it short, nor
    # one frame's writing (every sink gets each result, or none does)
    with StopOnSignal(stream.interrupt, finalising=lambda: stream.closing or stream.writing):
        try:
            for _ in stream:
                bar.update(1)
                if max_frames and stream.frames >= max_frames:
                    break
        except BaseException as e:  # noqa: BLE001 - outputs are finalised first, then it is raised
            error = e
        finally:
            bar.close()
        try:
            stream.close(error=error)
        except Exception as e:  # noqa: BLE001 - a sink could not be finalised
            error = error or e
    if error is not None and not isinstance(error, KeyboardInterrupt):
        raise error
    s = stream.summary
    ended_early = not (stream.is_live or s.interrupted or (max_frames and s.frames >= max_frames))
    # headers overstate by a few frames (95 of 98 is common); a file cut short falls far below
    if ended_early and stream.frame_count > 1 and s.frames < 0.9 * stream.frame_count:
        log.warning("%s ended after %d of the %d frames its header announces (truncated or damaged?)",
                    s.source, s.frames, stream.frame_count)
    return s
