"""File helpers shared by the sinks: whole-or-nothing writes, and why a folder cannot be written."""
from __future__ import annotations

import os
from pathlib import Path


def disk_full(folder: Path) -> bool:
    """True when the file system of ``folder`` has no block left for this process."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    free = st.f_bfree if os.geteuid() == 0 else st.f_bavail  # root may use reserved blocks
    return free == 0


def disk_problem(folder: Path) -> str | None:
    """Why ``folder`` cannot take 64 KiB more (``No space left on device``, ``Read-only file
    system``, ...), found by writing and removing a probe file; None when it can."""
    probe = folder / f".uar-probe-{os.getpid()}"
    try:
        with open(probe, "wb") as f:
            f.write(b"\0" * 65536)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        return e.strerror or str(e)
    finally:
        try:
            probe.unlink()
        except OSError:
            pass
    return None


def write_whole(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all: a regular file (or a new one) gets a
    temporary file renamed over it, so a full disk leaves the old file, never half a new
    one; anything else (/dev/stdout, a pipe, a device) is written directly, never replaced."""
    if path.exists() and not path.is_file():
        with open(path, "wb") as f:
            f.write(data)
        return
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def folder_problem(path: Path) -> str | None:
    """Why a file cannot be created beside ``path`` now (``Read-only file system``,
    ``Permission denied``...), found by creating and removing an empty probe; None when it
    can. A device or pipe at ``path`` is written in place, so only it is checked."""
    if path.exists() and not path.is_file():
        return None if os.access(path, os.W_OK) else "Permission denied"
    probe = path.with_name(f".{path.name}.probe-{os.getpid()}")
    try:
        probe.open("wb").close()
        probe.unlink()
    except OSError as e:
        return e.strerror or str(e)
    return None
