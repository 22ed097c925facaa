"""Single-score routing: the baseline the evaluation compares UAR against."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from uar_stream.flow import Route


@dataclass(frozen=True)
class SingleUncertaintyRouter:
    """The baseline that one score cannot escape: reject when the score (e.g. total
    entropy) exceeds tau, otherwise accept. It cannot tell ambiguity from novelty."""

    tau: float

    def route(self, score: float) -> Route:
        """OUT_OF_DISTRIBUTION above tau, else CONFIDENT."""
        return Route.OUT_OF_DISTRIBUTION if score > self.tau else Route.CONFIDENT

    def rejects(self, scores: np.ndarray) -> np.ndarray:
        """Boolean mask of the scores this router rejects."""
        return np.asarray(scores) > self.tau
