"""Where a model directory is found: the path as given, the wheel's shipped model, the checkout.

The shipped ensemble lives in the repository as ``engines/default`` (the config default). A
wheel carries it as package data (``uar_stream/shipped/default``, mapped from engines/default
by setup.py), so an installed package finds it without a checkout; an editable install finds it
beside the package.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

from uar_stream.errors import ModelError

#: The config's default ``model.path``; only this name falls back to the shipped package data.
DEFAULT_MODEL = "engines/default"
_SHIPPED_PACKAGE = "uar_stream.shipped"
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # a checkout's root in an editable install


def shipped_model_dir() -> Path | None:
    """The installed wheel's copy of the default model, or None where there is none (an
    editable install or a plain checkout: there the model is ``engines/default``)."""
    try:
        d = resources.files(_SHIPPED_PACKAGE) / "default"
    except ModuleNotFoundError:
        return None
    # Wheels install unpacked, so the package data is a real directory (never a zip member).
    path = Path(str(d))
    return path if path.is_dir() else None


def _checkout_root() -> Path | None:
    """The source checkout the package is imported from (an editable install), if any."""
    return _PACKAGE_ROOT if (_PACKAGE_ROOT / "pyproject.toml").is_file() else None


def resolve_model_path(path: str | Path) -> Path:
    """A model directory from a user's path. Looked up, in order: the path as given (absolute,
    or relative to the working directory); for ``engines/default``, the installed package
    data; for any relative path, the checkout beside the package (editable installs).

    Raises ModelError (one line, naming every place looked in) when none is a directory.
    What the directory holds is checked later, by :func:`uar_stream.model.store.read_manifest`.
    """
    given = Path(path).expanduser()
    if given.is_absolute():
        if given.is_dir():
            return given
        raise ModelError(f"model directory not found: {given}")
    if given.is_dir():
        return given
    looked = [str(Path.cwd() / given)]
    candidates = []
    if given == Path(DEFAULT_MODEL):
        shipped = shipped_model_dir()
        looked.append(str(shipped) if shipped else "the installed package's shipped model (none)")
        candidates += [shipped] if shipped else []
    root = _checkout_root()
    if root is not None:
        candidates.append(root / given)
        looked.append(str(root / given))
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise ModelError(f"model directory not found: {path} (looked in {'; '.join(looked)})")
