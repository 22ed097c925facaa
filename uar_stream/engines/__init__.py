"""Engines: the fused ensemble behind one ``infer(batch)`` interface, on several backends."""
from __future__ import annotations

import logging
from pathlib import Path

from ..errors import ConfigError
from ..model_store import load_fused
from .base import Engine, EnsembleOutput
from .graph import UncertaintyGraph
from .torch_backend import TorchEngine

log = logging.getLogger("uar_stream.engine")

__all__ = ["Engine", "EnsembleOutput", "create_engine"]


def create_engine(model_dir: str | Path, backend: str = "auto", device: str = "auto",
                  precision: str = "fp32", max_batch: int = 64, threads: int = 0) -> Engine:
    """Build the engine for a model directory. ``backend='auto'`` logs what it chose and why."""
    fused, man = load_fused(model_dir)
    graph = UncertaintyGraph(fused, man.temperature)
    if backend not in ("auto", "torch"):
        raise ConfigError(f"engine.backend: {backend!r} is not available in this build; allowed: auto, torch")
    dev = "cpu" if device in ("auto", "cpu") else device
    eng = TorchEngine(graph, man.members, len(man.classes), dev, precision, max_batch, threads)
    if backend == "auto":
        log.warning("engine: backend auto chose %s", eng.name)
    return eng
