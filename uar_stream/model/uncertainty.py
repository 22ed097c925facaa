"""Total / aleatoric / epistemic decomposition of an ensemble's predictions.

For member probabilities p (B, M, C):
  total     = H(mean_m p_m)              (entropy of the ensemble's prediction)
  aleatoric = mean_m H(p_m)              (expected entropy: what every member finds ambiguous)
  epistemic = total - aleatoric >= 0     (mutual information: how much the members disagree)
All in nats; divide by log C for a 0..1 display scale.
"""
from __future__ import annotations

import math

import numpy as np

from uar_stream.flow import EnsembleOutput

_EPS = 1e-12


def entropy(p: np.ndarray, axis: int = -1) -> np.ndarray:
    """Shannon entropy in nats along ``axis`` (0 log 0 = 0)."""
    p = np.asarray(p, dtype=np.float64)
    return -(p * np.log(np.clip(p, _EPS, None))).sum(axis=axis)


def at_temperature(member_probs: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities softmax(z) -> softmax(z / T) (float64): p^(1/T), renormalised."""
    logp = np.log(np.clip(np.asarray(member_probs, np.float64), 1e-300, None)) / float(temperature)
    logp -= logp.max(axis=-1, keepdims=True)
    q = np.exp(logp)
    return q / q.sum(axis=-1, keepdims=True)


def decompose(member_probs: np.ndarray, temperature: float = 1.0) -> EnsembleOutput:
    """member_probs (B, M, C) -> EnsembleOutput (float64 uncertainties).

    ``temperature``: the decomposition temperature (manifest ``decomposition_temperature``)
    relative to the one ``member_probs`` were computed at; 1.0 (default) decomposes them as
    given. An engine's ``member_probs`` already are at the model's decomposition temperature,
    so ``decompose(out.member_probs)`` reproduces its total / aleatoric / epistemic."""
    p = np.asarray(member_probs, dtype=np.float64)
    if p.ndim != 3:
        raise ValueError(f"member_probs must be (B, M, C), got shape {p.shape}")
    if temperature != 1.0:
        p = at_temperature(p, temperature)
    mean = p.mean(axis=1)
    total = entropy(mean)
    aleatoric = entropy(p).mean(axis=1)
    epistemic = np.clip(total - aleatoric, 0.0, None)
    return EnsembleOutput(mean, total, aleatoric, epistemic, p)


def normalise(nats: np.ndarray | float, num_classes: int) -> np.ndarray | float:
    """Nats -> 0..1 by dividing by log C (the entropy of the uniform distribution)."""
    return nats / math.log(num_classes)
