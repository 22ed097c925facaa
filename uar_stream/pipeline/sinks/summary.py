"""The summary sink: the end-of-run summary printed for the user, optionally as JSON too."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import IO

from uar_stream.errors import SinkError
from uar_stream.flow import RunSummary, StreamInfo, StreamResult


def summary_text(s: RunSummary, outputs: dict[str, str | Path] | None = None) -> str:
    """The human summary: frames, speed, routes, labels, and where the outputs went."""
    d = s.to_dict()
    routes = ", ".join(f"{k} {v}" for k, v in d["routes"].items())
    labels = ", ".join(f"{k} {v}" for k, v in sorted(d["labels"].items(), key=lambda kv: -kv[1]))
    lines = [
        f"{'interrupted' if s.interrupted else 'done'}: {d['frames']} frames, {d['faces']} faces "
        f"in {d['seconds']:.1f} s ({d['fps']:.1f} fps; latency p50 {d['latency_ms_p50']} ms, "
        f"p95 {d['latency_ms_p95']} ms; dropped {d['dropped_frames']})",
        f"  routes: {routes}",
        f"  labels shown: {labels or '-'}",
    ]
    for name, path in (outputs or {}).items():
        lines.append(f"  {name + ':':<7} {path}")
    return "\n".join(lines)


class SummarySink:
    """At close, prints :func:`summary_text` (with ``show_text``; not when the run failed:
    the error is the message then) and writes the summary as JSON to ``json_path``."""

    def __init__(self, outputs: dict[str, str | Path] | None = None,
                 json_path: str | Path | None = None, out: IO[str] | None = None,
                 show_text: bool = True):
        self.outputs = dict(outputs or {})
        self.show_text = show_text
        self.json_path = Path(json_path) if json_path else None
        self.out = out

    def open(self, info: StreamInfo) -> None:
        """Create the JSON file's folder, as the other outputs do."""
        if self.json_path is not None:
            try:
                self.json_path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise SinkError(f"cannot create output folder {self.json_path.parent}: "
                                f"{e.strerror or e}") from None

    def write(self, result: StreamResult) -> None:
        """Nothing per frame: the stream counts for the summary."""

    def close(self, summary: RunSummary) -> None:
        """Print and write the summary."""
        if self.show_text and summary.error is None:
            print(summary_text(summary, self.outputs), file=self.out or sys.stdout)
        if self.json_path is not None:
            try:
                self.json_path.write_text(json.dumps(summary.to_dict(), indent=2))
            except OSError as e:
                raise SinkError(f"cannot write summary {self.json_path}: {e.strerror or e}") from None
