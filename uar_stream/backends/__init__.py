"""Engines: the fused ensemble behind one ``infer(batch)`` interface, on several backends.

graph.py     the uncertainty graph every backend runs (members -> probabilities -> entropies)
export.py    that graph as one ONNX file per model and precision (cached beside the model)
onnxruntime_backend.py / torch_backend.py (+ cuda_graphs.py) / tensorrt_backend.py
factory.py   create_engine: backend 'auto' picks tensorrt > torch-cuda > onnxruntime > torch-cpu
bench.py     faces/s and latency per backend and batch, fused vs looped members
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from uar_stream.backends.base import Engine, EnsembleOutput

if TYPE_CHECKING:
    from uar_stream.backends.factory import create_engine
    from uar_stream.backends.graph import UncertaintyGraph

__all__ = ["Engine", "EnsembleOutput", "UncertaintyGraph", "create_engine"]


def __getattr__(name: str):
    # Lazy: the CLI imports this package to register subcommands, and torch/onnxruntime
    # should load only when an engine is actually built.
    if name == "create_engine":
        from uar_stream.backends.factory import create_engine

        return create_engine
    if name == "UncertaintyGraph":
        from uar_stream.backends.graph import UncertaintyGraph

        return UncertaintyGraph
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
