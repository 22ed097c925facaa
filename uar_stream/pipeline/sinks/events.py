"""The event log sink: one JSON object per line, flushed per event (a crash loses nothing).

Every line has ``event`` (kind) and ``time`` (unix seconds when it happened). Kinds:
run_started, face, run_ended, and in live or tracked runs stream_lost / stream_restored /
track_started / route_changed / track_ended (docs/events.md has every field).
"""
from __future__ import annotations

import gzip
import json
import math
import os
import re
import shutil
import stat
from pathlib import Path

from uar_stream.config import EventsConfig
from uar_stream.errors import SinkError
from uar_stream.flow import Event, FaceResult, RunSummary, StreamInfo, StreamResult
from uar_stream.pipeline.sources import redact
from uar_stream.pipeline.tracking import iou_matrix


class EventLog:
    """A JSONL file of :class:`Event` records (or only a count, without a path).

    Crash- and full-disk-safe: each line is written with one ``write(2)`` and the file is
    cut back to its last complete line when a write fails, so it is valid JSONL up to its
    last line, whatever happened (a :class:`SinkError` names the file and the cause).
    ``max_bytes`` > 0 rotates a regular file before a line would pass that size: the full
    file becomes ``STEM.NNNN.SUFFIX`` (numbered on, never renamed again; ``.gz`` with
    ``compress``), each a valid JSONL file of whole lines; only the newest ``keep`` rotated
    files of this name are kept. ``rotated`` lists the ones this log wrote, oldest first.
    """

    def __init__(self, path: str | Path | None, max_bytes: int = 0, keep: int = 10,
                 compress: bool = False):
        self.path = Path(path) if path else None
        self.max_bytes, self.keep, self.compress = max_bytes, keep, compress
        self.rotated: list[Path] = []
        self.failed: SinkError | None = None
        self.count = 0
        self._fd: int | None = None
        self._size = 0  # bytes of complete lines in the current file
        if self.path is not None:
            if self.path.parent and not self.path.parent.exists():
                try:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                except OSError as e:
                    raise self._error("cannot create the folder of events file", e) from None
            self._open()
            if not stat.S_ISREG(os.fstat(self._fd).st_mode):
                self.max_bytes = 0  # a pipe or device (/dev/stdout): nothing to rename

    def _error(self, what: str, e: OSError) -> SinkError:
        return SinkError(f"{what} {self.path}: {e.strerror or e}")

    def _open(self, truncate: bool = True) -> None:
        flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if truncate else os.O_APPEND)
        try:
            self._fd = os.open(self.path, flags, 0o644)
            st = os.fstat(self._fd)  # a pipe or device cannot seek: its size is no concern
            self._size = st.st_size if stat.S_ISREG(st.st_mode) else 0
        except OSError as e:
            raise self._error("cannot write events file", e) from None

    def write(self, event: Event) -> dict:
        """Append one event as one line; returns its record. Raises :class:`SinkError` when
        the line cannot be written whole (the partial line is removed first)."""
        rec = event.to_dict()
        if self._fd is not None:
            self._write_line(_jsonl(rec))
        self.count += 1
        return rec

    def _write_line(self, line: bytes) -> None:
        if self.max_bytes and self._size and self._size + len(line) > self.max_bytes:
            self._rotate()
        view = memoryview(line)
        try:
            while view:
                view = view[os.write(self._fd, view):]
        except OSError as e:
            self._cut_back()
            self.failed = self._error("cannot write events file", e)
            raise self.failed from None
        self._size += len(line)

    def _cut_back(self) -> None:
        """Remove a partly written line (after ENOSPC, EIO...)."""
        try:
            os.ftruncate(self._fd, self._size)
            os.lseek(self._fd, self._size, os.SEEK_SET)
        except OSError:
            pass  # a device (/dev/full) cannot be cut: it holds no partial line either

    def _rotate(self) -> None:
        os.close(self._fd)
        self._fd = None
        n = max((i for i, _ in self._siblings()), default=0) + 1
        target = self.path.with_name(f"{self.path.stem}.{n:04d}{self.path.suffix}")
        try:
            os.replace(self.path, target)
            if self.compress:
                target = _gzip(target)
            self.rotated.append(target)
            for _, old in self._siblings()[:-self.keep]:
                old.unlink()
                if old in self.rotated:
                    self.rotated.remove(old)
        except OSError as e:
            self.failed = self._error("cannot rotate events file", e)
            # keep the lines of a file not renamed (or start one), so run_ended can still be tried
            self._open(truncate=False)
            raise self.failed from None
        self._open()

    def _siblings(self) -> list[tuple[int, Path]]:
        """Rotated files of this name (this run's and earlier runs'), oldest first."""
        pat = re.compile(re.escape(self.path.stem) + r"\.(\d{4,})" + re.escape(self.path.suffix)
                         + r"(\.gz)?$")
        found = []
        for p in self.path.parent.iterdir():
            m = pat.match(p.name)
            if m:
                found.append((int(m.group(1)), p))
        return sorted(found)

    def close(self) -> None:
        """Close the file (idempotent)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _jsonl(rec: dict) -> bytes:
    """One JSON line; NaN/inf (not JSON) become null so every line parses."""
    try:
        text = json.dumps(rec, separators=(",", ":"), allow_nan=False)
    except ValueError:
        text = json.dumps(_finite(rec), separators=(",", ":"), allow_nan=False)
    return (text + "\n").encode("utf-8")


def _finite(v):
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_finite(x) for x in v]
    return v


def _gzip(path: Path) -> Path:
    """Compress ``path`` to ``path.gz`` (written whole, then renamed) and remove ``path``."""
    out = path.with_name(path.name + ".gz")
    tmp = path.with_name(path.name + ".gz.tmp")
    try:
        with open(path, "rb") as src, gzip.open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.replace(tmp, out)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    path.unlink()
    return out


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
        c = self.config
        self.log = EventLog(self._path, int(c.max_mb * 1024 * 1024), c.keep, c.compress)
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
        """Log the events left at the end, then ``run_ended`` (with ``rotated``: the rotated
        files, oldest first); close the file. After a write failure (already raised) it still
        tries, so a disk with room again gets its ``run_ended``, and raises nothing new."""
        assert self.log is not None, "open() first"
        failed_before = self.log.failed is not None
        try:
            for ev in summary.final_events:
                self.log.write(ev)
            end = summary.to_dict()
            if end.get("error"):
                end["error"] = redact(end["error"])
            if self.log.rotated:
                end["rotated"] = [p.name for p in self.log.rotated]
            self.log.write(Event("run_ended", end))
        except SinkError:
            if not failed_before:
                raise
        finally:
            self.log.close()

    @property
    def files(self) -> list[Path]:
        """Every file this sink wrote, oldest first: the rotated ones, then the current one."""
        if self._path is None:
            return []
        return [*(self.log.rotated if self.log is not None else []), self._path]
