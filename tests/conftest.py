import os
from pathlib import Path

import pytest

os.environ.setdefault("GLOG_minloglevel", "2")

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
MEDIA = SHARED / "media"
FERPLUS = SHARED / "data" / "ferplus"
# UAR_TEST_MODEL points the model tests at another model directory (development).
DEFAULT_MODEL = Path(os.environ.get("UAR_TEST_MODEL", ROOT / "engines" / "default"))


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} not available")
    return path


@pytest.fixture(scope="session")
def media() -> Path:
    return need(MEDIA)


@pytest.fixture(scope="session")
def ferplus() -> Path:
    return need(FERPLUS)


@pytest.fixture(scope="session")
def default_model() -> Path:
    return need(DEFAULT_MODEL / "manifest.json").parent


@pytest.fixture(scope="session")
def analyzer(default_model):
    from uar_stream import Analyzer

    with Analyzer.from_config({"model": {"path": str(default_model)}}) as an:
        yield an
