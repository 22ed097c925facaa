"""Corrupted face sets, built in worker processes and cached on disk.

A set is one (corruption, severity) applied to every face; the special set
(``RESAMPLE``, 0) is the up/down resampling alone (a control). Cache files live under
``cache_dir/<key>/`` where the key hashes the clean faces, the seed and the pipeline version,
so a rerun on the same data (and the same ``--limit``) reads them back instead.
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Iterator

import numpy as np

from .corruptions import PIPELINE_VERSION, corrupt_faces, images_key, resample_only

log = logging.getLogger("uar_stream.evaluation")

RESAMPLE = "resample_only"

SetId = tuple[str, int]  # (corruption name, severity)


def set_key(images: np.ndarray, seed: int) -> str:
    return f"{images_key(images)[:20]}-seed{seed}-v{PIPELINE_VERSION}"


def set_path(cache_dir: Path, key: str, sid: SetId) -> Path:
    return cache_dir / key / f"{sid[0]}_s{sid[1]}.npz"


def _build(images: np.ndarray, sid: SetId, seed: int) -> np.ndarray:
    if sid[0] == RESAMPLE:
        return resample_only(images)
    return corrupt_faces(images, sid[0], sid[1], seed)


def _build_and_save(images: np.ndarray, sid: SetId, seed: int, path: str | None) -> np.ndarray:
    out = _build(images, sid, seed)
    if path:
        save_atomic(Path(path), images=out)
    return out


def save_atomic(path: Path, **arrays) -> None:
    """np.savez to ``path`` via a temporary file, so an interrupted run leaves no torn file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, path)


def load_cached(path: Path) -> np.ndarray | None:
    try:
        with np.load(path, allow_pickle=False) as d:
            return d["images"]
    except (OSError, KeyError, ValueError):
        return None


def generate(images: np.ndarray, sids: list[SetId], cache_dir: Path | None, seed: int = 0,
             workers: int = 0) -> Iterator[tuple[SetId, np.ndarray, bool]]:
    """Yield (set id, uint8 (N, S, S) faces, from_cache) for every requested set: cached sets
    first, then the rest as worker processes finish them (in completion order).

    workers: processes to use (0: one per CPU core; 1: build in this process).
    """
    key = set_key(images, seed)
    todo = []
    for sid in sids:
        cached = load_cached(set_path(cache_dir, key, sid)) if cache_dir else None
        if cached is not None and cached.shape == images.shape:
            yield sid, cached, True
        else:
            todo.append(sid)
    if not todo:
        return
    workers = workers or os.cpu_count() or 1
    workers = min(workers, len(todo))
    paths = {sid: str(set_path(cache_dir, key, sid)) if cache_dir else None for sid in todo}
    if workers <= 1:
        for sid in todo:
            yield sid, _build_and_save(images, sid, seed, paths[sid]), False
        return
    # spawn, not fork: the parent holds torch's thread pools, which do not survive a fork.
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"),
                             initializer=_init_worker) as pool:
        futures = {pool.submit(_build_and_save, images, sid, seed, paths[sid]): sid for sid in todo}
        for fut in as_completed(futures):
            yield futures[fut], fut.result(), False


def _init_worker() -> None:
    # One thread per worker process: the workers are the parallelism.
    os.environ["OMP_NUM_THREADS"] = "1"
    import cv2
    cv2.setNumThreads(1)
