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
    """Split a batch larger than the engine's maximum into chunks."""
    if len(batch) <= max_batch:
        return engine_infer(batch)
    return EnsembleOutput.concat([engine_infer(batch[i:i + max_batch])
                                  for i in range(0, len(batch), max_batch)])
