"""The summary sink: the end-of-run summary printed for the user, optionally as JSON too."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import IO

from uar_stream.errors import SinkError
from uar_stream.flow import RunSummary, StreamInfo, StreamResult
from uar_stream.pipeline.sinks.events import EventLogSink
from uar_stream.pipeline.sinks.files import folder_problem, write_whole
from uar_stream.pipeline.sources import redact


def summary_text(s: RunSummary, outputs: dict[str, str | Path] | None = None,
                 rotated: list[Path] | None = None) -> str:
    """The human summary: frames, speed, routes, labels, and where the outputs went
    (``rotated``: the event log's rotated files, oldest first)."""
    d = s.to_dict()
    routes = ", ".join(f"{k} {v}" for k, v in d["routes"].items())
    labels = _counts(d["labels"])
    lines = [
        f"{'interrupted' if s.interrupted else 'done'}: {d['frames']} frames, {d['faces']} faces "
        f"in {d['seconds']:.1f} s ({d['fps']:.1f} fps; latency p50 {d['latency_ms_p50']} ms, "
        f"p95 {d['latency_ms_p95']} ms; dropped {d['dropped_frames']})",
        f"  routes: {routes}",
        f"  labels shown (confident faces): {labels or '-'}",
    ]
    if d.get("ambiguous_pairs"):
        lines.append(f"  ambiguous (top two shown): {_counts(d['ambiguous_pairs'])}")
    if d.get("rejected"):
        lines.append(f"  rejected, by reason: {_counts(d['rejected'])}")
    for name, path in (outputs or {}).items():
        lines.append(f"  {name + ':':<7} {path}")
    if rotated:
        names = ", ".join(p.name for p in rotated)
        lines.append(f"  {'':<7} (+ {len(rotated)} rotated, oldest first: {names})")
    return "\n".join(lines)


def _counts(d: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(d.items(), key=lambda kv: -kv[1]))


class SummarySink:
    """At close, prints :func:`summary_text` (with ``show_text``; not when the run failed:
    the error is the message then) and writes the summary as JSON to ``json_path``."""

    def __init__(self, outputs: dict[str, str | Path] | None = None,
                 json_path: str | Path | None = None, out: IO[str] | None = None,
                 show_text: bool = True, events: EventLogSink | None = None):
        self.outputs = dict(outputs or {})
        self.events = events  # its rotated files are listed (close it before this sink)
        self.show_text = show_text
        self.json_path = Path(json_path) if json_path else None
        self.out = out

    def open(self, info: StreamInfo) -> None:
        """Create the JSON file's folder, as the other outputs do, and check that a file can
        be written there now (not only after the whole run)."""
        if self.json_path is not None:
            try:
                self.json_path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:  # mkdir says "File exists" when a file is in the way
                why = "Not a directory" if isinstance(e, FileExistsError) else e.strerror or e
                raise SinkError(f"cannot create output folder {self.json_path.parent}: {why}") from None
            if self.json_path.is_dir():
                raise SinkError(f"cannot write summary {self.json_path}: Is a directory")
            why = folder_problem(self.json_path)
            if why:
                raise SinkError(f"cannot write summary {self.json_path}: {why}")

    def write(self, result: StreamResult) -> None:
        """Nothing per frame: the stream counts for the summary."""

    def close(self, summary: RunSummary) -> None:
        """Print and write the summary (with ``rotated``: the event log's rotated files). The
        JSON file is written whole or not at all (a temporary file renamed over it)."""
        d = summary.to_dict()
        if d.get("error"):
            d["error"] = redact(d["error"])
        rotated = self.events.log.rotated if self.events is not None and self.events.log else []
        if rotated:
            d["rotated"] = [str(p) for p in rotated]
        if self.json_path is not None:  # first: "done" is printed only when everything is written
            try:
                write_whole(self.json_path, json.dumps(d, indent=2).encode())
            except OSError as e:
                raise SinkError(f"cannot write summary {self.json_path}: {e.strerror or e}") from None
        if self.show_text and summary.error is None:
            print(summary_text(summary, self.outputs, rotated), file=self.out or sys.stdout)

