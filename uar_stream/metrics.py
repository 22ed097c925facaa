"""Metrics used by training reports and ``uar-stream evaluate``.

Shapes: probs (N, C); labels (N,) integer classes; scores (N,) with "higher = more uncertain".
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata, spearmanr
from sklearn.metrics import roc_auc_score


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    """Share of rows whose arg-max class is the label."""
    return float((np.asarray(probs).argmax(1) == np.asarray(labels)).mean())


@dataclass
class Reliability:
    """Per-bin calibration of the top-1 confidence; arrays (bins,). Empty bins have count 0
    and NaN confidence/accuracy."""

    edges: np.ndarray  # (bins + 1,)
    confidence: np.ndarray
    accuracy: np.ndarray
    count: np.ndarray


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> Reliability:
    """Equal-width bins over (0, 1] of the top-1 confidence (a confidence of exactly 1/15
    falls in the first bin)."""
    probs = np.asarray(probs)
    conf = probs.max(1)
    correct = probs.argmax(1) == np.asarray(labels)
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    count = np.bincount(idx, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        c = np.bincount(idx, weights=conf, minlength=bins) / count
        a = np.bincount(idx, weights=correct.astype(float), minlength=bins) / count
    return Reliability(edges, c, a, count)


def ece(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error of the top-1 confidence, equal-width bins over (0, 1]."""
    r = reliability(probs, labels, bins)
    m = r.count > 0
    return float((r.count[m] / r.count.sum() * np.abs(r.accuracy[m] - r.confidence[m])).sum())


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two (N,) arrays (ties get average ranks)."""
    return float(spearmanr(a, b).statistic)


def _rank_pearson_rows(ra: np.ndarray, rb: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row pair of rank arrays (R, n) -> (R,)."""
    ra = ra - ra.mean(1, keepdims=True)
    rb = rb - rb.mean(1, keepdims=True)
    den = np.sqrt((ra * ra).sum(1) * (rb * rb).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (ra * rb).sum(1) / den


def spearman_ci(a: np.ndarray, b: np.ndarray, n_resamples: int = 1000, confidence: float = 0.95,
                seed: int = 0, chunk: int = 100) -> dict:
    """Spearman correlation with a seeded percentile-bootstrap CI (faces resampled in pairs).

    Each resample is ranked afresh (average ranks for ties, as ``spearmanr`` does), so every
    bootstrap value is an exact Spearman correlation. Returns {value, ci_low, ci_high}.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    rng = np.random.default_rng(seed)
    stats = []
    for start in range(0, n_resamples, chunk):
        idx = rng.integers(0, len(a), size=(min(chunk, n_resamples - start), len(a)))
        stats.append(_rank_pearson_rows(rankdata(a[idx], axis=1), rankdata(b[idx], axis=1)))
    s = np.concatenate(stats)
    s = s[np.isfinite(s)]
    alpha = (1.0 - confidence) / 2
    lo, hi = (np.quantile(s, [alpha, 1 - alpha]) if len(s) else (np.nan, np.nan))
    return {"value": spearman(a, b), "ci_low": float(lo), "ci_high": float(hi)}


def auroc(negative: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve for telling ``positive`` (e.g. corrupted faces) from
    ``negative`` (clean faces) by a score where higher means "more likely positive".
    0.5 = chance; ties count half."""
    negative, positive = np.asarray(negative), np.asarray(positive)
    y = np.r_[np.zeros(len(negative)), np.ones(len(positive))]
    return float(roc_auc_score(y, np.r_[negative, positive]))
