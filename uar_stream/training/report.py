"""Temperature fitting and the per-member / ensemble metrics stored in the manifest."""
from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import softmax

from uar_stream.labels import majority_label, vote_entropy
from uar_stream.metrics import accuracy, ece, spearman
from uar_stream.model.uncertainty import decompose, entropy


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """One temperature for all members, minimising the NLL of the ensemble mean prediction.

    logits (N, M, C). Fitted on held-out *train* faces, never on the reported test split.
    """
    labels = np.asarray(labels)

    def nll(log_t: float) -> float:
        p = softmax(logits / np.exp(log_t), axis=-1).mean(1)
        return float(-np.log(np.clip(p[np.arange(len(labels)), labels], 1e-12, None)).mean())

    res = minimize_scalar(nll, bounds=(np.log(0.25), np.log(4.0)), method="bounded")
    return float(np.exp(res.x))


def evaluate_members(logits: np.ndarray, votes: np.ndarray, temperature: float) -> dict:
    """Accuracy, ECE (15 bins), NLL and Spearman(uncertainty, vote entropy), per member and
    for the ensemble (aleatoric), at the given temperature."""
    labels = majority_label(votes)
    disagreement = vote_entropy(votes)
    probs = softmax(logits / temperature, axis=-1)  # (N, M, C)
    out: dict = {"temperature": temperature, "members": []}
    for m in range(probs.shape[1]):
        p = probs[:, m]
        out["members"].append({
            "accuracy": round(accuracy(p, labels), 4),
            "ece": round(ece(p, labels), 4),
            "spearman_entropy_disagreement": round(spearman(entropy(p), disagreement), 4),
        })
    d = decompose(probs)
    nll = -np.log(np.clip(d.mean_probs[np.arange(len(labels)), labels], 1e-12, None)).mean()
    out["ensemble"] = {
        "accuracy": round(accuracy(d.mean_probs, labels), 4),
        "ece": round(ece(d.mean_probs, labels), 4),
        "nll": round(float(nll), 4),
        "spearman_aleatoric_disagreement": round(spearman(d.aleatoric, disagreement), 4),
        "spearman_total_disagreement": round(spearman(d.total, disagreement), 4),
        "spearman_epistemic_disagreement": round(spearman(d.epistemic, disagreement), 4),
    }
    raw = softmax(logits, axis=-1).mean(1)
    out["ensemble"]["ece_before_temperature"] = round(ece(raw, labels), 4)
    return out
