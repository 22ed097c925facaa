"""Helpers of the reliability suite: run the CLI and check its answer; check written files."""
from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import cv2

#: (case, exit code, message) of every case that ran, for the table conftest prints
ROWS: list[tuple[str, int, str]] = []

ERROR_PREFIX = "uar-stream {cmd}: error: "


@dataclass
class Answer:
    """What a CLI run gave back."""

    code: int
    stdout: str
    stderr: str

    @property
    def message(self) -> str:
        """The last stderr line (the error, when the run failed)."""
        lines = self.stderr.strip().splitlines()
        return lines[-1] if lines else ""


def cli(argv: list[str], cwd: Path | None = None) -> Answer:
    """`uar-stream ARGV` in this process (main() returns the exit code; SystemExit from
    argparse is caught) with stdout/stderr captured. A traceback fails the test."""
    from uar_stream.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    old = Path.cwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as e:
                code = int(e.code or 0)
    finally:
        os.chdir(old)
    return Answer(code, out.getvalue(), err.getvalue())


def cli_process(argv: list[str], **kw) -> subprocess.Popen:
    """`uar-stream ARGV` as its own process (signals), output as text pipes."""
    import sys

    return subprocess.Popen([sys.executable, "-m", "uar_stream.cli.main", *argv],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def check_answer(case: str, ans: Answer, code: int, message: str | None, cmd: str = "run") -> None:
    """The exit code; no traceback; on failure exactly one error line, the last, matching
    ``message`` (a regex searched in it). Records the row for the table."""
    import re

    shown = ans.message if ans.code not in (0, 130) else (ans.stdout.splitlines() or [""])[0]
    ROWS.append((case, ans.code, re.sub(r"/\S*/pytest-\d+/[^/\s:]+", "TMP", shown)))
    assert "Traceback" not in ans.stderr and "Traceback" not in ans.stdout, ans.stderr
    assert ans.code == code, (ans.code, ans.stderr[-2000:])
    errors = [line for line in ans.stderr.splitlines() if ": error: " in line]
    if code in (0, 130):  # done, or interrupted by the user: no error line
        assert not errors, errors
        return
    assert len(errors) == 1 and ans.message == errors[0], ans.stderr
    if code == 2:
        prefix = ERROR_PREFIX.format(cmd=cmd) if cmd else "uar-stream: error: "
        assert ans.message.startswith(prefix), ans.message
    if message is not None:
        assert re.search(message, ans.message), (message, ans.message)


def events_valid(path: Path, complete: bool = True) -> list[dict]:
    """Every line of the JSONL file parses (all of it: no cut last line); with ``complete``
    the first record is run_started and the last run_ended. Returns the records."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        text = f.read()
    assert text == "" or text.endswith("\n"), "a cut last line"
    recs = [json.loads(line) for line in text.splitlines()]
    if complete:
        assert recs and recs[0]["event"] == "run_started" and recs[-1]["event"] == "run_ended"
    return recs


def video_valid(path: Path, frames: int | None = None) -> int:
    """The video (or image) plays: OpenCV reads every frame; returns the count."""
    if path.suffix.lower() in (".png", ".jpg", ".jpeg"):
        assert cv2.imread(str(path)) is not None
        return 1
    from uar_stream.pipeline.sinks.video import video_problem

    assert video_problem(path) is None, video_problem(path)
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    assert n > 0
    if frames is not None:
        assert n == frames, (n, frames)
    return n


def valid_or_absent(path: Path) -> None:
    """An output that was not finished must not exist half-written."""
    if path.exists():
        video_valid(path)


class SmallDisk:
    """A folder on its own tiny file system, for full-disk and read-only cases: a tmpfs
    (``mount`` needs root or CAP_SYS_ADMIN; CI machines may refuse it, then ``mount()``
    returns False and the caller falls back to /dev/full or skips, saying which ran)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.mounted = False

    def mount(self, size_kb: int = 64, free_kb: int | None = None, read_only: bool = False) -> bool:
        """Mount a tmpfs of ``size_kb`` and fill it until ``free_kb`` is left; False if refused."""
        self.path.mkdir(parents=True, exist_ok=True)
        opts = f"size={size_kb}k" + (",ro" if read_only else "")
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(self.path)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            return False
        self.mounted = True
        if free_kb is not None:
            self.fill(free_kb)
        return True

    def fill(self, free_kb: int) -> None:
        """Write a filler file until only ``free_kb`` KiB are left (tmpfs counts 4 KiB pages)."""
        st = os.statvfs(self.path)
        free = st.f_bavail * st.f_frsize
        with open(self.path / "filler", "wb") as f:
            try:
                f.write(b"\0" * max(0, free - free_kb * 1024))
            except OSError:
                pass  # full: as wanted

    def unmount(self) -> None:
        """Unmount (lazily: a test that failed may still hold a file open)."""
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.path)], capture_output=True)
            self.mounted = False
