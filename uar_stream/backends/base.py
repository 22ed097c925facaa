"""The one interface every backend implements: ``infer(batch) -> EnsembleOutput``."""
from __future__ import annotations

from typing import Protocol

import numpy as np

from uar_stream.flow import EnsembleOutput


class Engine(Protocol):
    """A backend. ``name`` says which (e.g. 'onnxruntime', 'torch-cpu')."""

    name: str
    members: int
    num_classes: int

    def infer(self, batch: np.ndarray) -> EnsembleOutput:
        """batch: float32 (B, 1, H, W), already prepared by ``preprocess.prepare_batch``."""
        ...


def run_batched(engine_infer, batch: np.ndarray, max_batch: int) -> EnsembleOutput:
    """Split a batch larger than the engine's maximum into chunks of at most ``max_batch``."""
    if len(batch) <= max_batch:
        return engine_infer(batch)
    return EnsembleOutput.concat([engine_infer(batch[i:i + max_batch])
                                  for i in range(0, len(batch), max_batch)])


class BatchedEngine:
    """Base for backends: ``infer`` checks the input, splits batches above ``max_batch`` and
    answers zero faces without running; subclasses implement ``_infer`` for one chunk."""

    name: str
    members: int
    num_classes: int
    max_batch: int
    input_size: int

    def _infer(self, batch: np.ndarray) -> EnsembleOutput:
        raise NotImplementedError

    def infer(self, batch: np.ndarray) -> EnsembleOutput:
        """batch float32 (B, 1, S, S) -> EnsembleOutput with B rows."""
        batch = np.asarray(batch)
        s = self.input_size
        if batch.ndim != 4 or batch.shape[1:] != (1, s, s):
            raise ValueError(f"{self.name}: expected a batch of shape (B, 1, {s}, {s}), "
                             f"got {batch.shape}")
        if len(batch) == 0:
            return EnsembleOutput.empty(self.members, self.num_classes,
                                        "density" in getattr(self, "output_names", ()))
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        return run_batched(self._infer, batch, self.max_batch)
