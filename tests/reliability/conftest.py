"""The reliability suite: every case runs the real CLI (in-process unless the process itself is
the thing tested) or the public API, and asserts the exit code, the one-line message, and that
what was already written is valid. The table of cases (case, exit code, message) is printed at
the end of the run (`pytest tests/reliability`), and written as Markdown to the file named by
UAR_RELIABILITY_TABLE if it is set."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.reliability.support import ROWS
from tests.support.live import make_tiny_model


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A small random-weight model in the shipped format (fast; the pipeline is real)."""
    return make_tiny_model(tmp_path_factory.mktemp("reliability-model") / "tiny")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Print the reliability table (and write it to $UAR_RELIABILITY_TABLE)."""
    if not ROWS:
        return
    rows = sorted(ROWS, key=lambda r: r[0])
    tr = terminalreporter
    tr.section(f"reliability cases: {len(rows)}")
    width = min(60, max(len(r[0]) for r in rows))
    for case, code, message in rows:
        tr.write_line(f"{case[:width]:<{width}}  {code!s:>4}  {message[:150]}")
    out = os.environ.get("UAR_RELIABILITY_TABLE")
    if out:
        lines = ["| case | exit | message |", "|---|---|---|"]
        lines += [f"| {c} | {code} | {re.sub(r'[|]', '/', m)} |" for c, code, m in rows]
        Path(out).write_text("\n".join(lines) + "\n")
