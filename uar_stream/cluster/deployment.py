"""The fused ensemble as a Ray Serve deployment: every camera's crops, batched by faces.

A camera actor sends ONE request per frame (its prepared crops, (N, 1, S, S)); the
replica's ``@serve.batch`` gathers requests until their faces reach ``max_batch_faces``
(``batch_size_fn`` counts faces, not requests) or ``batch_wait_ms`` after the first one,
runs the engine once, and answers each request with its own rows plus the size of the
batch they rode in (so callers can count batch fill without asking the replicas).
"""
from __future__ import annotations

import asyncio

import numpy as np
from ray import serve

from uar_stream.backends import create_engine
from uar_stream.cluster.batcher import rows
from uar_stream.flow import EnsembleOutput
from uar_stream.model.locate import resolve_model_path

#: The Serve application's name (one per cluster service).
APP_NAME = "uar-ensemble"

#: Serve's own logs: warnings only, no access log line per frame.
SERVE_LOGGING = {"log_level": "WARNING", "enable_access_log": False}


def _faces(requests: list[np.ndarray]) -> int:
    """``batch_size_fn``: a batch's size is its faces."""
    return sum(len(r) for r in requests)


@serve.deployment(name="ensemble")
class EnsembleDeployment:
    """One replica: one engine. ``engine``: the config's ``engine:`` keys (backend, device,
    precision, max_batch, threads, flip_tta); ``model``: the model path as the config names it."""

    def __init__(self, model: str, engine: dict, max_batch_faces: int, batch_wait_ms: float):
        self.engine = create_engine(resolve_model_path(model), **engine)
        self.infer.set_max_batch_size(max_batch_faces)
        self.infer.set_batch_wait_timeout_s(batch_wait_ms / 1000.0)

    def describe(self) -> tuple[str, int, int]:
        """(engine name, members, classes): what a camera's BatchedEngine reports."""
        return self.engine.name, self.engine.members, self.engine.num_classes

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005, batch_size_fn=_faces)
    async def infer(self, requests: list[np.ndarray]) -> list[tuple[EnsembleOutput, int]]:
        """One engine call over every request of the batch; each gets (its rows, batch faces)."""
        sizes = [len(r) for r in requests]
        # On a thread: the replica keeps queueing the next batch's requests meanwhile.
        out = await asyncio.to_thread(self.engine.infer, np.concatenate(requests))
        total, answers, i = sum(sizes), [], 0
        for n in sizes:
            answers.append((rows(out, i, i + n), total))
            i += n
        return answers


def build_app(model: str, engine: dict, replicas: int, cpus: float, gpus: float,
              max_batch_faces: int, batch_wait_ms: float):
    """The bound application (``serve.run`` it): ``replicas`` replicas, each reserving
    ``cpus`` CPUs and ``gpus`` GPUs."""
    options = {"num_cpus": cpus, **({"num_gpus": gpus} if gpus else {})}
    # Every camera keeps one request in flight; a replica should accept many at once.
    return EnsembleDeployment.options(num_replicas=replicas, ray_actor_options=options,
                                      max_ongoing_requests=256, logging_config=SERVE_LOGGING).bind(
        model, engine, max_batch_faces, batch_wait_ms)
