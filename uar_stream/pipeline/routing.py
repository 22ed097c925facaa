"""Routing: what to do with a face, given its uncertainties (Route lives in flow).

The OOD gate is a choice (config ``routing.ood_gate``), each signal at its own threshold:

* ``mutual_information``: epistemic > tau_epistemic (the paper's gate);
* ``density``: the feature-density score > tau_density (needs a model with a density file);
* ``either``: the OR of the two.

A face that passes the gate is ``ambiguous`` when aleatoric > tau_aleatoric, else
``confident``. :meth:`Router.decide` also says which signal rejected a face: ``epistemic``
(mutual information; checked first, so it is named when both reject) or ``density``.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from uar_stream.config import RoutingConfig
from uar_stream.flow import Route

log = logging.getLogger("uar_stream.routing")

#: The allowed values of ``routing.ood_gate``.
OOD_GATES = ("mutual_information", "density", "either")
#: The reason a face rejected by each signal carries (FaceResult.reason).
REASON_EPISTEMIC = "epistemic"
REASON_DENSITY = "density"


@dataclass(frozen=True)
class Router:
    """Uncertainty-Aware Routing. Thresholds in nats (``tau_density``: the density score's
    own unit, see :mod:`uar_stream.model.density`)."""

    tau_epistemic: float
    tau_aleatoric: float
    ood_gate: str = "mutual_information"
    tau_density: float = math.inf

    def __post_init__(self):
        if self.ood_gate not in OOD_GATES:
            raise ValueError(f"ood_gate {self.ood_gate!r} is not allowed; allowed: {', '.join(OOD_GATES)}")

    @property
    def uses_density(self) -> bool:
        """Whether the gate reads the density score."""
        return self.ood_gate != "mutual_information"

    def rejected_by(self, epistemic: float, density: float | None = None) -> str | None:
        """The signal that rejects this face (:data:`REASON_EPISTEMIC` / :data:`REASON_DENSITY`),
        or None when the gate lets it through. A missing density never rejects."""
        if self.ood_gate != "density" and epistemic > self.tau_epistemic:
            return REASON_EPISTEMIC
        if self.uses_density and density is not None and density > self.tau_density:
            return REASON_DENSITY
        return None

    def decide(self, aleatoric: float, epistemic: float,
               density: float | None = None) -> tuple[Route, str | None]:
        """(the route of one face, the signal that rejected it or None)."""
        why = self.rejected_by(epistemic, density)
        if why is not None:
            return Route.OUT_OF_DISTRIBUTION, why
        return (Route.AMBIGUOUS if aleatoric > self.tau_aleatoric else Route.CONFIDENT), None

    def route(self, aleatoric: float, epistemic: float, density: float | None = None) -> Route:
        """The route of one face."""
        return self.decide(aleatoric, epistemic, density)[0]

    def route_batch(self, aleatoric: np.ndarray, epistemic: np.ndarray,
                    density: np.ndarray | None = None) -> list[Route]:
        """The routes of a batch of faces."""
        dens = [None] * len(aleatoric) if density is None else [float(d) for d in density]
        return [self.route(float(a), float(e), d)
                for a, e, d in zip(aleatoric, epistemic, dens, strict=True)]


def router_for(cfg: RoutingConfig, model_has_density: bool, model_dir: object = "the model") -> Router:
    """The Router of config ``routing`` for a model with or without a density file.

    ``density`` or ``either`` with a model that has no density file (older models, the LDL
    baseline) gate on mutual information, the paper's gate, and say so in one warning: the
    default gate must not make such models unusable."""
    gate = cfg.ood_gate
    if gate != "mutual_information" and not model_has_density:
        log.warning("routing: %s has no density file; ood_gate %s gates on mutual information "
                    "(tau_epistemic) instead (uar-stream fit-density adds one)", model_dir, gate)
        gate = "mutual_information"
    return Router(cfg.tau_epistemic, cfg.tau_aleatoric, gate, cfg.tau_density)
