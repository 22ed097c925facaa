"""The training losses both trainers share, and the soft class reweighting for rare classes."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

LOSSES = ("soft", "majority")


def member_loss(logits: torch.Tensor, soft: torch.Tensor, hard: torch.Tensor, kind: str,
                weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean loss over the batch. ``kind``: "soft" (cross-entropy against the vote
    distribution, FER+ "probability" mode) or "majority" (cross-entropy against the majority
    label). ``weight`` (B,), optional: per-face weights, e.g. from :func:`face_weights`; the
    mean is then weighted (sum of w * loss / sum of w), so weights only shift emphasis between
    faces and never change the loss scale the learning rate was tuned for."""
    if kind == "soft":
        per = -(soft * F.log_softmax(logits, dim=-1)).sum(-1)
    else:
        per = F.cross_entropy(logits, hard, reduction="none")
    if weight is None:
        return per.mean()
    return (per * weight).sum() / weight.sum().clamp_min(1e-12)


def class_weights(soft: np.ndarray, power: float, cap: float) -> np.ndarray:
    """Per-class weights (C,) ``(share_c / mean share) ** -power``, clipped to [1/cap, cap].

    Shares are the vote mass of each class over the training faces (so a face with a few
    fear votes counts towards fear). power 0: all ones; 1: full inverse frequency."""
    share = soft.sum(0) / soft.sum()
    w = (share / share.mean()) ** -power
    return np.clip(w, 1.0 / cap, cap).astype(np.float32)


def face_weights(soft: np.ndarray, power: float, cap: float) -> np.ndarray:
    """Per-face weights (N,): the face's vote distribution dotted with :func:`class_weights`,
    normalised to mean 1.

    This reweights *faces*, not targets: each face keeps its own soft target, so the
    disagreement among annotators (what the aleatoric uncertainty learns to recover) is not
    distorted, while faces with rare-class votes (disgust, fear, contempt) count more."""
    w = soft @ class_weights(soft, power, cap)
    return (w / w.mean()).astype(np.float32)
