"""Corrupted face sets, built in worker processes and cached on disk.

A set is one (corruption, severity) applied to every face, or to a fixed sample of the faces
(``rows``: their indices, so each face meets the same random draws as in a full set); the
special set (``RESAMPLE``, 0) is the up/down resampling alone (a control). Cache files live under
``cache_dir/<key>/`` where the key hashes the clean faces, the seed and the pipeline version,
so a rerun on the same data (and the same ``--limit``) reads them back instead.
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from uar_stream.evaluation.corruptions import (
    PIPELINE_VERSION,
    corrupt_faces,
    images_key,
    resample_only,
)
from uar_stream.evaluation.protocols import parse_set_name

log = logging.getLogger("uar_stream.evaluation")

RESAMPLE = "resample_only"

SetId = tuple[str, int]  # (corruption name, severity)


def set_key(images: np.ndarray, seed: int) -> str:
    """Cache folder name for sets built from ``images`` with ``seed`` by this pipeline version."""
    return f"{images_key(images)[:20]}-seed{seed}-v{PIPELINE_VERSION}"


def set_stem(sid: SetId, rows: np.ndarray | None = None) -> str:
    """File stem of a set (images and predictions caches): a sampled set names its size, so
    it never stands in for the full set or for a sample of another size."""
    return f"{sid[0]}_s{sid[1]}" + ("" if rows is None else f"_r{len(rows)}")


def set_path(cache_dir: Path, key: str, sid: SetId, rows: np.ndarray | None = None) -> Path:
    """Where the cached faces of one (corruption, severity) set live."""
    return cache_dir / key / f"{set_stem(sid, rows)}.npz"


def _build(images: np.ndarray, sid: SetId, seed: int, rows: np.ndarray | None = None) -> np.ndarray:
    faces = images if rows is None else images[rows]
    if sid[0] == RESAMPLE:
        return resample_only(faces)
    name, native = parse_set_name(sid[0])
    return corrupt_faces(faces, name, sid[1], seed, native=native, index=rows)


@dataclass
class BuiltSet:
    """One set as ``generate`` yields it: the faces, or what ``score`` made of them."""

    sid: SetId
    value: Any  # uint8 (N, S, S) faces, or score(sid, faces) when a scorer was given
    from_cache: bool  # the faces came from the image cache
    build_cpu_s: float  # CPU seconds spent building (0 when cached)


def _produce(images: np.ndarray, sid: SetId, seed: int, path: str | None,
             score: Callable[[SetId, np.ndarray], Any] | None,
             rows: np.ndarray | None = None) -> BuiltSet:
    cached = load_cached(Path(path)) if path else None
    t = time.process_time()
    shape = images.shape if rows is None else (len(rows), *images.shape[1:])
    if cached is not None and cached.shape == shape:
        out, from_cache = cached, True
    else:
        out, from_cache = _build(images, sid, seed, rows), False
        if path:
            save_atomic(Path(path), images=out)
    build_s = 0.0 if from_cache else time.process_time() - t
    return BuiltSet(sid, score(sid, out) if score else out, from_cache, build_s)


def save_atomic(path: Path, **arrays) -> None:
    """np.savez to ``path`` via a temporary file, so an interrupted run leaves no torn file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, path)


def load_cached(path: Path) -> np.ndarray | None:
    """The cached faces at ``path``, or None when the file is missing or unreadable."""
    try:
        with np.load(path, allow_pickle=False) as d:
            return d["images"]
    except (OSError, KeyError, ValueError):
        return None


def generate(images: np.ndarray, sids: list[SetId], cache_dir: Path | None, seed: int = 0,
             workers: int = 0, score: Callable[[SetId, np.ndarray], Any] | None = None,
             rows: dict[SetId, np.ndarray] | None = None) -> Iterator[BuiltSet]:
    """Yield a :class:`BuiltSet` for every requested set, in completion order. Each set is read
    from the image cache or built (and cached).

    score: a picklable callable run on each set's faces where they were built (a worker), so
    the faces need not travel back to this process: its result is yielded instead of them.
    workers: processes to use (0: one per CPU core; 1: build in this process).
    rows: {set id: indices of the faces it is built from} for sampled sets (others: every face).
    """
    if not sids:
        return
    key = set_key(images, seed)
    rows = rows or {}
    paths = {sid: str(set_path(cache_dir, key, sid, rows.get(sid))) if cache_dir else None
             for sid in sids}
    workers = min(workers or os.cpu_count() or 1, len(sids))
    if workers <= 1:
        for sid in sids:
            yield _produce(images, sid, seed, paths[sid], score, rows.get(sid))
        return
    # spawn, not fork: the parent holds torch's thread pools, which do not survive a fork.
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"),
                             initializer=_init_worker) as pool:
        futures = [pool.submit(_produce, images, sid, seed, paths[sid], score, rows.get(sid))
                   for sid in sids]
        for fut in as_completed(futures):
            yield fut.result()


def _init_worker() -> None:
    # One thread per worker process: the workers are the parallelism.
    os.environ["OMP_NUM_THREADS"] = "1"
    import cv2
    cv2.setNumThreads(1)
