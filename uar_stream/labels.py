"""FER+ classes and vote handling shared by training and evaluation."""
from __future__ import annotations

import numpy as np

#: The 8 FER+ emotions, in FER+ column order (the models' output order).
CLASSES: tuple[str, ...] = (
    "neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt",
)
NUM_CLASSES = len(CLASSES)


def vote_distribution(votes: np.ndarray) -> np.ndarray:
    """(N, >=8) vote counts -> (N, 8) distribution over the 8 emotions (rows with no emotion
    vote become uniform, so entropy stays defined)."""
    v = np.asarray(votes, dtype=np.float64)[:, :NUM_CLASSES]
    s = v.sum(1, keepdims=True)
    return np.where(s > 0, v / np.maximum(s, 1e-12), 1.0 / NUM_CLASSES)


def majority_label(votes: np.ndarray) -> np.ndarray:
    """Majority emotion (ties to the lower index, as FER+ does)."""
    return np.asarray(votes)[:, :NUM_CLASSES].argmax(1)


def emotion_rows(votes: np.ndarray) -> np.ndarray:
    """Boolean mask of rows FER+ keeps: neither 'unknown' nor 'NF' wins the 10-way vote."""
    return np.asarray(votes).argmax(1) < NUM_CLASSES


def vote_entropy(votes: np.ndarray) -> np.ndarray:
    """Entropy (nats) of the 8-emotion vote distribution: the annotators' disagreement."""
    p = vote_distribution(votes)
    with np.errstate(divide="ignore", invalid="ignore"):
        return -(np.where(p > 0, p * np.log(p), 0.0)).sum(1)
