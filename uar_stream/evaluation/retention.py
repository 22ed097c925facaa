"""Retention at matched OOD rejection: how many ambiguous in-distribution faces a router keeps
while it rejects a given share of unfamiliar (corrupted) faces.

A single-uncertainty router rejects a face when its one score (total entropy, or 1 - max
softmax) is high; ambiguous faces have high scores too, so they are rejected along with the
novel ones. UAR rejects only on epistemic uncertainty and sends high-aleatoric faces to the
"ambiguous" route instead, so it should keep more of them at the same OOD rejection rate.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class Operating:
    """One router at one target rate: reject when score > threshold."""

    threshold: float
    ood_rejected: float  # achieved share of OOD faces rejected
    kept: float  # share of the ambiguous ID faces kept (not rejected); NaN if there are none
    kept_count: int


def threshold_for_rate(ood_scores: np.ndarray, rate: float) -> float:
    """Threshold t such that ``score > t`` rejects ``round(rate * n)`` of the OOD scores
    (fewer when scores tie at t)."""
    s = np.sort(np.asarray(ood_scores, np.float64))[::-1]
    k = int(round(rate * len(s)))
    if k <= 0:
        return float(s[0])  # nothing is strictly above the maximum
    if k >= len(s):
        return float(np.nextafter(s[-1], -np.inf))
    return float(s[k])


def operate(ood_scores: np.ndarray, id_scores: np.ndarray, rate: float) -> Operating:
    """The router that rejects ``rate`` of ``ood_scores``, and what it does to ``id_scores``."""
    t = threshold_for_rate(ood_scores, rate)
    kept = np.asarray(id_scores) <= t
    share = float(kept.mean()) if kept.size else float("nan")  # no ambiguous faces: undefined
    return Operating(t, float((np.asarray(ood_scores) > t).mean()), share, int(kept.sum()))


def retention_curve(ood: dict[str, np.ndarray], ambiguous_id: dict[str, np.ndarray],
                    rates: np.ndarray) -> list[dict]:
    """For each router name (key of both dicts: its rejection score on the OOD faces and on the
    ambiguous ID faces) and each target rate: the operating point. Returns one row per rate:
    {rate, <name>: {threshold, ood_rejected, kept, kept_count}, ...}."""
    rows = []
    for r in rates:
        row: dict = {"rate": round(float(r), 4)}
        for name in ood:
            row[name] = asdict(operate(ood[name], ambiguous_id[name], float(r)))
        rows.append(row)
    return rows
