"""Where the tests find the checkout and the shared data; ``need`` skips when a file is absent."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
MEDIA = SHARED / "media"
FERPLUS = SHARED / "data" / "ferplus"
# UAR_TEST_MODEL points the model tests at another model directory (development).
DEFAULT_MODEL = Path(os.environ.get("UAR_TEST_MODEL", ROOT / "engines" / "default"))


def need(path: Path) -> Path:
    """Skip the calling test when ``path`` is missing (e.g. no ../shared on this machine)."""
    if not path.exists():
        pytest.skip(f"{path} not available")
    return path
