"""Fixtures over real data: the shared media and FER+ files, the shipped model, one analyzer."""
from pathlib import Path

import pytest

from tests.support.paths import DEFAULT_MODEL, FERPLUS, MEDIA, need


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
