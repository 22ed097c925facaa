"""The :class:`~uar_stream.serve.batcher.Batcher` of a camera actor: each request (one
frame's crops) goes to the ensemble deployment through a Serve handle; the batching
across cameras happens there (``@serve.batch``, counted in faces).

A request with more faces than ``max_faces`` (a crowd) is split into several requests
sent at once, so no request can exceed the deployment's batch size.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import Future

import numpy as np

from uar_stream.flow import EnsembleOutput

#: How long a request is sent again while the ensemble has no live replica (a lost node).
RETRY_S = 60.0


class ServeBatcher:
    """``submit(camera, crops)`` -> a (completed) future of their EnsembleOutput. ``handle``:
    a DeploymentHandle of the ensemble deployment. Counts what the camera's requests saw:
    ``stats()`` -> requests, faces, engine calls (each request counts faces/batch-faces of
    a call, so the sum over all cameras is exact), the largest batch, batch sizes seen."""

    def __init__(self, handle, max_faces: int):
        self.handle, self.max_faces = handle, max(1, max_faces)
        self._lock = threading.Lock()
        self._requests = self._faces = self._max_fill = 0
        self._calls = 0.0
        self._sizes: dict[int, int] = {}

    def register(self, camera_id: str) -> None:
        """Nothing to do: the deployment does not wait for particular cameras."""

    def unregister(self, camera_id: str) -> None:
        """Nothing to do (see :meth:`register`)."""

    def submit(self, camera_id: str, batch: np.ndarray) -> Future:
        """Send the crops (split when larger than ``max_faces``) and wait for the answers."""
        fut: Future = Future()
        try:
            chunks = [batch[i:i + self.max_faces] for i in range(0, len(batch), self.max_faces)]
            answers = self._send(chunks)
            fut.set_result(_join([a for a, _ in answers]))
            self._count([(len(c), n) for c, (_, n) in zip(chunks, answers, strict=True)])
        except BaseException as e:  # noqa: BLE001 - the camera's stream gets it from the future
            fut.set_exception(e)
        return fut

    def _send(self, chunks: list[np.ndarray]) -> list[tuple[EnsembleOutput, int]]:
        """The answers; a replica lost with requests in flight (its node died) is not the
        camera's fault: send them again (Serve starts a new replica) for up to RETRY_S."""
        from ray.exceptions import RayActorError

        deadline, wait = time.monotonic() + RETRY_S, 0.2
        while True:
            try:
                return [r.result() for r in [self.handle.infer.remote(c) for c in chunks]]
            except RayActorError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(wait)
                wait = min(wait * 2, 5.0)

    def _count(self, seen: list[tuple[int, int]]) -> None:
        with self._lock:
            for mine, batch_faces in seen:
                self._requests += 1
                self._faces += mine
                self._calls += mine / batch_faces
                self._max_fill = max(self._max_fill, batch_faces)
                self._sizes[batch_faces] = self._sizes.get(batch_faces, 0) + 1

    def stats(self) -> dict:
        """The counters (JSON-ready): requests, faces, calls, max_fill, sizes {faces: requests}."""
        with self._lock:
            return {"requests": self._requests, "faces": self._faces, "calls": self._calls,
                    "max_fill": self._max_fill, "sizes": dict(self._sizes)}


def _join(outs: list[EnsembleOutput]) -> EnsembleOutput:
    if len(outs) == 1:
        return outs[0]
    dens = None if outs[0].density is None else np.concatenate([o.density for o in outs])
    out = EnsembleOutput(*(np.concatenate([getattr(o, k) for o in outs])
                           for k in ("mean_probs", "total", "aleatoric", "epistemic", "member_probs")),
                         density=dens)
    return rows(out, 0, len(out))


def rows(out: EnsembleOutput, a: int, b: int) -> EnsembleOutput:
    """Rows ``a:b`` of every per-face array (``density`` too, when the model has one)."""
    return EnsembleOutput(out.mean_probs[a:b], out.total[a:b], out.aleatoric[a:b], out.epistemic[a:b],
                          out.member_probs[a:b], None if out.density is None else out.density[a:b])
