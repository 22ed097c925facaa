"""Routing: what to do with a face, given its two uncertainties (Route lives in flow)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from uar_stream.flow import Route


@dataclass(frozen=True)
class Router:
    """Uncertainty-Aware Routing. Thresholds in nats.

    epistemic > tau_epistemic -> OUT_OF_DISTRIBUTION; else aleatoric > tau_aleatoric ->
    AMBIGUOUS; else CONFIDENT.
    """

    tau_epistemic: float
    tau_aleatoric: float

    def route(self, aleatoric: float, epistemic: float) -> Route:
        """The route of one face."""
        if epistemic > self.tau_epistemic:
            return Route.OUT_OF_DISTRIBUTION
        if aleatoric > self.tau_aleatoric:
            return Route.AMBIGUOUS
        return Route.CONFIDENT

    def route_batch(self, aleatoric: np.ndarray, epistemic: np.ndarray) -> list[Route]:
        """The routes of a batch of faces."""
        return [self.route(float(a), float(e)) for a, e in zip(aleatoric, epistemic, strict=True)]

