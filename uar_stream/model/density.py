"""Feature-density OOD score: a Mahalanobis distance on the members' penultimate features.

Why: the mutual information of a softmax ensemble is tied to its entropy (on FER+ PublicTest
Spearman(epistemic, aleatoric) is ~0.9), so a gate on it rejects ambiguous faces with the
unfamiliar ones. A distance in feature space does not share that geometry.

For member m with features f (D,), class means mu_{m,c} and one shared (within-class)
covariance Sigma_m, all fitted on training faces (Lee et al. 2018):

    d_m(f) = min_c (f - mu_{m,c})^T Sigma_m^{-1} (f - mu_{m,c}) / D
    density(x) = mean_m d_m(f_m(x))

Higher is less familiar (it is a distance, named for the density it stands for). The division
by D only gives a readable scale (about 1 for a typical training face). The statistics live
in ``<model_dir>/density.safetensors`` (means (M, C, D), precision (M, D, D), float32); the
manifest's ``density`` entry names the file and its sha256, and the engine computes the score
in the same graph as the other outputs (``backends/graph.py``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from uar_stream.errors import ModelError

DENSITY_FILE = "density.safetensors"
#: Ridge added to the covariance, relative to its mean diagonal: keeps the precision finite
#: when features are nearly collinear (ReLU features of a small CNN often are).
SHRINKAGE = 1e-3


@dataclass
class DensityModel:
    """Class-conditional Gaussians with a shared covariance, per member.

    means (M, C, D), precision (M, D, D): float32.
    """

    means: np.ndarray
    precision: np.ndarray

    @property
    def members(self) -> int:
        """Ensemble size M."""
        return int(self.means.shape[0])

    @property
    def dim(self) -> int:
        """Feature width D."""
        return int(self.means.shape[2])

    def score(self, features: np.ndarray) -> np.ndarray:
        """features (N, M, D) -> density score (N,) float64, computed directly in numpy (the
        reference the engine's in-graph score is tested against)."""
        f = np.asarray(features, np.float64)
        if f.ndim != 3 or f.shape[1:] != (self.members, self.dim):
            raise ValueError(f"features must be (N, {self.members}, {self.dim}), got {f.shape}")
        diff = f[:, :, None, :] - self.means.astype(np.float64)[None]  # (N, M, C, D)
        maha = np.einsum("nmcd,mde,nmce->nmc", diff, self.precision.astype(np.float64), diff)
        return maha.min(axis=2).mean(axis=1) / self.dim


def fit_density(features: np.ndarray, labels: np.ndarray, num_classes: int,
                shrinkage: float = SHRINKAGE) -> DensityModel:
    """features (N, M, D) of training faces, labels (N,) in [0, C) -> the fitted model.
    Raises ValueError when a class has no face (its mean would be undefined)."""
    f = np.asarray(features, np.float64)
    y = np.asarray(labels)
    counts = np.bincount(y, minlength=num_classes)
    if (counts == 0).any():
        raise ValueError(f"no training face of class {int(np.flatnonzero(counts == 0)[0])}")
    m_count, d = f.shape[1], f.shape[2]
    means = np.zeros((m_count, num_classes, d))
    precision = np.zeros((m_count, d, d))
    for m in range(m_count):
        fm = f[:, m]
        mu = np.stack([fm[y == c].mean(0) for c in range(num_classes)])
        centred = fm - mu[y]
        cov = centred.T @ centred / len(fm)
        cov += np.eye(d) * shrinkage * float(np.trace(cov)) / d
        means[m], precision[m] = mu, np.linalg.inv(cov)
        precision[m] = (precision[m] + precision[m].T) / 2  # exactly symmetric
    return DensityModel(means.astype(np.float32), precision.astype(np.float32))


def save_density(model: DensityModel, path: str | Path) -> None:
    """Write the statistics as safetensors."""
    save_file({"means": np.ascontiguousarray(model.means, np.float32),
               "precision": np.ascontiguousarray(model.precision, np.float32)}, str(path))


def load_density(path: str | Path, members: int, num_classes: int) -> DensityModel:
    """Read ``path`` (never unpickled) and check its shapes against the ensemble's M and C.
    Raises ModelError naming the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"density file not found: {path}")
    try:
        t = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelError(f"{path}: not a valid safetensors file ({e})") from None
    if set(t) != {"means", "precision"}:
        raise ModelError(f"{path}: expected tensors 'means' and 'precision', found {sorted(t)}")
    means, precision = t["means"], t["precision"]
    m, c = members, num_classes
    d = means.shape[-1] if means.ndim == 3 else -1
    if means.shape != (m, c, d) or precision.shape != (m, d, d):
        raise ModelError(f"{path}: shapes {means.shape} / {precision.shape} do not fit an ensemble "
                         f"of {m} members and {c} classes (need (M, C, D) / (M, D, D))")
    return DensityModel(means.astype(np.float32), precision.astype(np.float32))
