"""Routing: what to do with a face, given its two uncertainties."""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np


class Route(str, Enum):
    CONFIDENT = "confident"  # show the label
    AMBIGUOUS = "ambiguous"  # in-distribution but the expression itself is unclear: show the distribution
    OUT_OF_DISTRIBUTION = "out_of_distribution"  # unfamiliar input: reject, show no emotion


@dataclass(frozen=True)
class Router:
    """Uncertainty-Aware Routing. Thresholds in nats.

    epistemic > tau_epistemic -> OUT_OF_DISTRIBUTION; else aleatoric > tau_aleatoric ->
    AMBIGUOUS; else CONFIDENT.
    """

    tau_epistemic: float
    tau_aleatoric: float

    def route(self, aleatoric: float, epistemic: float) -> Route:
        if epistemic > self.tau_epistemic:
            return Route.OUT_OF_DISTRIBUTION
        if aleatoric > self.tau_aleatoric:
            return Route.AMBIGUOUS
        return Route.CONFIDENT

    def route_batch(self, aleatoric: np.ndarray, epistemic: np.ndarray) -> list[Route]:
        return [self.route(float(a), float(e)) for a, e in zip(aleatoric, epistemic)]


@dataclass(frozen=True)
class SingleUncertaintyRouter:
    """The baseline that one score cannot escape: reject when the score (e.g. total
    entropy) exceeds tau, otherwise accept. It cannot tell ambiguity from novelty."""

    tau: float

    def route(self, score: float) -> Route:
        return Route.OUT_OF_DISTRIBUTION if score > self.tau else Route.CONFIDENT

    def rejects(self, scores: np.ndarray) -> np.ndarray:
        return np.asarray(scores) > self.tau
