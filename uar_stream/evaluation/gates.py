"""The OOD gates as scores, so each can be measured like any uncertainty (AUROC, Spearman,
retention) and the router's ``either`` gate is measured as it runs.

``mutual_information`` scores a face by its epistemic uncertainty, ``density`` by its
feature-density score. ``either`` rejects a face when EITHER score passes its own threshold;
with both thresholds at the same in-distribution quantile q, that is one threshold on

    either(x) = max(F_mi(epistemic(x)), F_density(density(x)))

where F is the empirical CDF of that score on in-distribution faces (the clean faces), so it
is measured as one score. Beyond the largest in-distribution value F keeps growing linearly
(1 + (x - max) / range), so faces more unfamiliar than any clean one stay ranked.
"""
from __future__ import annotations

import numpy as np

GATES = ("mutual_information", "density", "either")
#: The Scores field each single-signal gate reads.
GATE_FIELDS = {"mutual_information": "epistemic", "density": "density"}


class Ecdf:
    """The empirical CDF of in-distribution scores, extended linearly beyond their maximum."""

    def __init__(self, reference: np.ndarray):
        self.ref = np.sort(np.asarray(reference, np.float64))
        self.span = max(float(self.ref[-1] - self.ref[0]), 1e-12)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Scores (N,) -> their CDF values (N,) (> 1 beyond the reference's maximum)."""
        x = np.asarray(x, np.float64)
        f = np.searchsorted(self.ref, x, side="right") / len(self.ref)
        above = x > self.ref[-1]
        f[above] = 1.0 + (x[above] - self.ref[-1]) / self.span
        return f

    def quantile(self, q: float) -> float:
        """The threshold t with F(t) = q (inverse of the in-range part)."""
        return float(np.quantile(self.ref, min(max(q, 0.0), 1.0), method="higher"))


class GateScorer:
    """Each gate's score of any set of faces; ``clean`` is the in-distribution reference the
    ``either`` gate's CDFs are taken on."""

    def __init__(self, clean):
        self.has_density = getattr(clean, "density", None) is not None
        self.cdf = {g: Ecdf(clean.score(f)) for g, f in GATE_FIELDS.items()
                    if f != "density" or self.has_density}

    @property
    def gates(self) -> tuple[str, ...]:
        """The gates this model can be scored with (density ones need a density output)."""
        return GATES if self.has_density else ("mutual_information",)

    def score(self, scores, gate: str) -> np.ndarray:
        """The gate's rejection score of ``scores`` (a Scores): higher rejects first."""
        if gate == "either":
            return np.maximum(self.cdf["mutual_information"](scores.epistemic),
                              self.cdf["density"](scores.density))
        return np.asarray(scores.score(GATE_FIELDS[gate]), np.float64)


def either_thresholds(epistemic: np.ndarray, density: np.ndarray,
                      reject: float) -> tuple[float, float, float]:
    """Thresholds (tau_epistemic, tau_density, achieved rate) of the ``either`` gate on
    in-distribution faces: both at the one common quantile q for which their OR rejects
    ``reject`` of them, or as close as ties allow (bisection over q; each signal keeps its own
    threshold)."""
    e, d = np.asarray(epistemic, np.float64), np.asarray(density, np.float64)

    def at(q: float) -> tuple[float, float, float]:
        te, td = np.quantile(e, q, method="higher"), np.quantile(d, q, method="higher")
        return float(te), float(td), float(((e > te) | (d > td)).mean())

    lo, hi = 0.0, 1.0
    for _ in range(60):
        q = (lo + hi) / 2
        lo, hi = (q, hi) if at(q)[2] > reject else (lo, q)
    return min(at(lo), at(hi), key=lambda t: abs(t[2] - reject))
