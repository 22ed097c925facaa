"""One engine for every camera: face crops from all streams, batched across streams.

The idea of DeepStream's nvstreammux (a batch size and a push timeout): a batch fires when
it holds ``max_batch`` crops, when ``timeout_ms`` have passed since its first crop arrived,
or when every registered camera is waiting (nothing more can come: each camera has one
request in flight). Requests are taken round-robin over the cameras, starting one camera
further each batch, so no camera starves; each camera gets back the rows of its own request.

The interface a camera uses is :class:`Batcher` (``submit`` the crops of one frame -- or of
the few frames a file stream classifies together -- and get a future of their results), so
the engine may run elsewhere (a Ray Serve deployment, issue #17) without touching cameras.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from uar_stream.backends import Engine
from uar_stream.flow import EnsembleOutput


class Batcher(Protocol):
    """What a camera needs from the engine side."""

    def register(self, camera_id: str) -> None:
        """A camera starts submitting."""

    def unregister(self, camera_id: str) -> None:
        """A camera has stopped (its pending requests are still answered)."""

    def submit(self, camera_id: str, batch: np.ndarray) -> Future:
        """Prepared crops (N, 1, S, S) of one request -> a future of their EnsembleOutput."""


@dataclass
class BatchStats:
    """Counters since start: engine calls, faces, requests; the largest batch; what waits."""

    calls: int = 0
    faces: int = 0
    requests: int = 0
    max_fill: int = 0
    queue_depth: int = 0  # faces waiting now

    @property
    def fill(self) -> float:
        """Mean faces per engine call (> 1: batching across streams happened)."""
        return self.faces / self.calls if self.calls else 0.0


@dataclass
class _Request:
    camera_id: str
    batch: np.ndarray
    future: Future
    arrived: float


class CrossStreamBatcher:
    """Batches requests of several cameras into one engine call (see the module docstring).
    Thread-safe; runs its engine on one thread of its own. ``close()`` fails what waits."""

    def __init__(self, engine: Engine, max_batch: int = 16, timeout_ms: float = 5.0):
        self.engine, self.max_batch, self.timeout_s = engine, max(1, max_batch), timeout_ms / 1000.0
        self.name, self.members, self.num_classes = engine.name, engine.members, engine.num_classes
        self._queues: dict[str, deque[_Request]] = {}
        self._registered: set[str] = set()
        self._rr = 0  # the camera that goes first in the next batch
        self._stats = BatchStats()
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="uar-batcher", daemon=True)
        self._thread.start()

    # -- the Batcher interface ------------------------------------------------------------
    def register(self, camera_id: str) -> None:
        """A camera starts submitting (it counts for "every camera waits")."""
        with self._cond:
            self._registered.add(camera_id)
            self._queues.setdefault(camera_id, deque())

    def unregister(self, camera_id: str) -> None:
        """A camera is gone; requests it left are still answered."""
        with self._cond:
            self._registered.discard(camera_id)
            self._drop_idle_locked()
            self._cond.notify_all()

    def submit(self, camera_id: str, batch: np.ndarray) -> Future:
        """Queue one request; the future gets its EnsembleOutput (rows in order)."""
        fut: Future = Future()
        with self._cond:
            if self._closed:
                raise RuntimeError("the engine batcher is closed")
            self._queues.setdefault(camera_id, deque()).append(
                _Request(camera_id, batch, fut, time.perf_counter()))
            self._cond.notify_all()
        return fut

    # -- stats and lifetime ---------------------------------------------------------------
    def stats(self) -> BatchStats:
        """A copy of the counters, with the faces waiting now."""
        with self._cond:
            s = BatchStats(**{k: getattr(self._stats, k) for k in ("calls", "faces", "requests",
                                                                   "max_fill")})
            s.queue_depth = sum(len(r.batch) for q in self._queues.values() for r in q)
        return s

    def close(self) -> None:
        """Stop the engine thread; requests still waiting fail."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=10)
        with self._cond:
            for q in self._queues.values():
                while q:
                    q.popleft().future.set_exception(RuntimeError("the engine batcher closed"))

    # -- internals ------------------------------------------------------------------------
    def _ready_locked(self, now: float) -> tuple[bool, float | None]:
        """(fire now?, seconds to wait otherwise)."""
        waiting = [q for q in self._queues.values() if q]
        if not waiting:
            return False, None
        faces = sum(len(r.batch) for q in waiting for r in q)
        first = min(q[0].arrived for q in waiting)
        left = first + self.timeout_s - now
        every = all(self._queues.get(c) for c in self._registered)
        if faces >= self.max_batch or every or left <= 0:
            return True, 0.0
        return False, left

    def _take_locked(self) -> list[_Request]:
        """Round-robin: one request per camera per round until the batch is full."""
        ids = list(self._queues)
        order = ids[self._rr % len(ids):] + ids[: self._rr % len(ids)]
        self._rr += 1
        taken: list[_Request] = []
        faces = 0
        progress = True
        while progress:
            progress = False
            for cid in order:
                q = self._queues[cid]
                if not q or (taken and faces + len(q[0].batch) > self.max_batch):
                    continue
                r = q.popleft()
                taken.append(r)
                faces += len(r.batch)
                progress = faces < self.max_batch
                if not progress:
                    break
        self._drop_idle_locked()
        return taken

    def _drop_idle_locked(self) -> None:
        for cid in [c for c, q in self._queues.items() if not q and c not in self._registered]:
            del self._queues[cid]

    def _loop(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._closed:
                        return
                    fire, wait = self._ready_locked(time.perf_counter())
                    if fire:
                        break
                    self._cond.wait(wait if wait is not None else 0.5)
                taken = self._take_locked()
            self._run(taken)

    def _run(self, taken: list[_Request]) -> None:
        sizes = [len(r.batch) for r in taken]
        try:
            out = self.engine.infer(np.concatenate([r.batch for r in taken]))
        except BaseException as e:  # noqa: BLE001 - every camera of the batch gets the error
            for r in taken:
                r.future.set_exception(e)
            return
        with self._cond:
            s = self._stats
            s.calls, s.faces, s.requests = s.calls + 1, s.faces + sum(sizes), s.requests + len(taken)
            s.max_fill = max(s.max_fill, sum(sizes))
        i = 0
        for r, n in zip(taken, sizes, strict=True):
            r.future.set_result(_rows(out, i, i + n))
            i += n


def _rows(out: EnsembleOutput, a: int, b: int) -> EnsembleOutput:
    return EnsembleOutput(out.mean_probs[a:b], out.total[a:b], out.aleatoric[a:b], out.epistemic[a:b],
                          out.member_probs[a:b])


class BatchedEngine:
    """An engine (``infer``) for one camera's Analyzer that goes through the batcher: the
    camera's stream code does not know its crops share an engine call with other cameras."""

    def __init__(self, batcher: Batcher, camera_id: str, name: str, members: int, num_classes: int):
        self.batcher, self.camera_id = batcher, camera_id
        self.name, self.members, self.num_classes = name, members, num_classes

    def infer(self, batch: np.ndarray) -> EnsembleOutput:
        """Submit and wait for this request's rows."""
        return self.batcher.submit(self.camera_id, batch).result()
