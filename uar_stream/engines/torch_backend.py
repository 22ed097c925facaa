"""Torch backend: CPU (eager) or CUDA (fp16/bf16 autocast)."""
from __future__ import annotations

import numpy as np
import torch

from .base import EnsembleOutput, run_batched
from .graph import UncertaintyGraph


class TorchEngine:
    def __init__(self, graph: UncertaintyGraph, members: int, num_classes: int,
                 device: str = "cpu", precision: str = "fp32", max_batch: int = 64,
                 threads: int = 0):
        if threads > 0:
            torch.set_num_threads(threads)
        self.device = torch.device(device)
        self.graph = graph.to(self.device).eval()
        self.members, self.num_classes = members, num_classes
        self.max_batch = max_batch
        self.dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)
        self.name = f"torch-{self.device.type}" + (f"-{precision}" if self.dtype else "")

    @torch.inference_mode()
    def _infer(self, batch: np.ndarray) -> EnsembleOutput:
        x = torch.from_numpy(np.ascontiguousarray(batch, np.float32)).to(self.device)
        with torch.autocast(self.device.type, dtype=self.dtype or torch.float32,
                            enabled=self.dtype is not None):
            outs = self.graph(x)
        return EnsembleOutput(*(o.float().cpu().numpy() for o in outs))

    def infer(self, batch: np.ndarray) -> EnsembleOutput:
        return run_batched(self._infer, batch, self.max_batch)
