"""The one interface every backend implements: ``infer(batch) -> EnsembleOutput``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass
class EnsembleOutput:
    """Per-face ensemble prediction; uncertainties in nats.

    mean_probs (B, C); total, aleatoric, epistemic (B,); member_probs (B, M, C).
    """

    mean_probs: np.ndarray
    total: np.ndarray
    aleatoric: np.ndarray
    epistemic: np.ndarray
    member_probs: np.ndarray

    def __len__(self) -> int:
        return len(self.mean_probs)

    @classmethod
    def empty(cls, members: int, num_classes: int) -> "EnsembleOutput":
        """The output for zero faces."""
        z = np.zeros((0,), np.float32)
        return cls(np.zeros((0, num_classes), np.float32), z, z.copy(), z.copy(),
                   np.zeros((0, members, num_classes), np.float32))

    @classmethod
    def concat(cls, parts: list["EnsembleOutput"]) -> "EnsembleOutput":
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in
                     ("mean_probs", "total", "aleatoric", "epistemic", "member_probs")))


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
            return EnsembleOutput.empty(self.members, self.num_classes)
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        return run_batched(self._infer, batch, self.max_batch)
