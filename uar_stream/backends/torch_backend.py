"""Torch backend: CPU (eager) or CUDA (fp32/fp16/bf16 autocast, CUDA graphs per batch bucket)."""
from __future__ import annotations

import logging

import numpy as np
import torch

from uar_stream.backends.base import BatchedEngine, EnsembleOutput
from uar_stream.backends.cuda_graphs import CudaGraphRunner, buckets_for
from uar_stream.backends.graph import UncertaintyGraph
from uar_stream.errors import ConfigError

log = logging.getLogger("uar_stream.engine")

_DTYPES = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


def cuda_unavailable_reason() -> str | None:
    """None if torch can use a CUDA GPU, else why not."""
    if not torch.backends.cuda.is_built():
        return f"torch {torch.__version__} is a CPU-only build"
    if not torch.cuda.is_available():
        return "torch.cuda.is_available() is False (no GPU or driver)"
    return None


class TorchEngine(BatchedEngine):
    """The uncertainty graph run by torch itself.

    On CUDA, ``precision`` fp16/bf16 runs the convs under autocast (the uncertainty math
    stays fp32, see graph.py), and with ``cuda_graphs`` every batch is padded to the next
    bucket and replayed from a captured CUDA graph (see cuda_graphs.py).
    """

    def __init__(self, graph: UncertaintyGraph, members: int, num_classes: int,
                 device: str = "cpu", precision: str = "fp32", max_batch: int = 64,
                 threads: int = 0, input_size: int = 48, cuda_graphs: bool = True):
        if precision not in _DTYPES:
            raise ConfigError(f"engine.precision: {precision!r} is not allowed for torch; "
                              f"allowed: {', '.join(_DTYPES)}")
        self.device = torch.device(device)
        if self.device.type == "cuda" and (why := cuda_unavailable_reason()):
            raise ConfigError(f"engine.device: cuda is not usable: {why}")
        if threads > 0 and self.device.type == "cpu":
            torch.set_num_threads(threads)  # process-wide: torch has no per-module setting
        self.graph = graph.to(self.device).eval()
        self.members, self.num_classes = members, num_classes
        self.output_names = self.graph.output_names
        self.max_batch, self.input_size = max_batch, input_size
        self.precision = precision
        self.dtype = _DTYPES[precision]
        self.runner: CudaGraphRunner | None = None
        if self.device.type == "cuda" and cuda_graphs:
            try:
                self.runner = CudaGraphRunner(self._forward, input_size, buckets_for(max_batch),
                                              self.device)
            except RuntimeError as e:  # capture is an optimisation: run eagerly without it
                log.warning("engine: CUDA graph capture failed, running eagerly (%s)",
                            str(e).splitlines()[0])
        self.name = (f"torch-{self.device.type}" + (f"-{precision}" if self.dtype else "")
                     + ("-cudagraphs" if self.runner else ""))

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        # cache_enabled=False: autocast's weight-cast cache does not mix with graph capture.
        with torch.no_grad(), torch.autocast(self.device.type, dtype=self.dtype or torch.float32,
                                             enabled=self.dtype is not None, cache_enabled=False):
            return self.graph(x)

    def _infer(self, batch: np.ndarray) -> EnsembleOutput:
        x = torch.from_numpy(batch)
        if self.runner is not None:
            outs = self.runner(x)
        else:
            outs = self._forward(x.to(self.device))
        arrays = (o.float().cpu().numpy() for o in outs)
        return EnsembleOutput(**dict(zip(self.graph.output_names, arrays, strict=True)))
