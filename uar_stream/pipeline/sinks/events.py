"""JSONL event log: one JSON object per line, flushed per event (a crash loses nothing).

Every event has ``event`` (type), ``time`` (unix seconds). Types: run_started, face,
run_ended, and in live runs stream_lost / stream_restored / track_* (README: Events).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import IO, Any

from uar_stream.errors import SinkError


class EventLog:
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

    def emit(self, event: str, **fields: Any) -> dict:
        rec = {"event": event, "time": round(time.time(), 3), **fields}
        if self._f is not None:
            self._f.write(json.dumps(rec, separators=(",", ":")) + "\n")
            self._f.flush()
        self.count += 1
        return rec

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None

    def __enter__(self) -> "EventLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
