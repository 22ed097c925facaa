"""Noise corruptions: gaussian, shot and impulse noise.

The library draws these independently for each of the three colour channels, so they are
computed on three channels here too (the same draws in the same order) and converted to gray
like the library's output; shot noise draws other random numbers from the same distribution
(:func:`shot_noise`).
"""
from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np
from numba import njit


def _rgb(x: np.ndarray) -> np.ndarray:
    """The gray face as the library sees it: three equal channels, in [0, 1]."""
    return np.repeat(x[..., None], 3, axis=2) / 255.


def _to_gray(rgb: np.ndarray) -> np.ndarray:
    """float RGB in [0, 255] -> uint8 gray: the library's final uint8, then our gray conversion."""
    return cv2.cvtColor(np.uint8(rgb), cv2.COLOR_RGB2GRAY)


def gaussian_noise(x: np.ndarray, severity: int, seed: int) -> np.ndarray:
    """Additive Gaussian noise, drawn per channel."""
    c = [.08, .12, 0.18, 0.26, 0.38][severity - 1]
    x = _rgb(x)
    return _to_gray(np.clip(x + np.random.normal(size=x.shape, scale=c), 0, 1) * 255)


def impulse_noise(x: np.ndarray, severity: int, seed: int) -> np.ndarray:
    """Salt and pepper from scikit-image's generator seeded with the face's seed, as the
    library calls it."""
    from skimage.util import random_noise
    c = [.03, .06, .09, 0.17, 0.27][severity - 1]
    return _to_gray(np.clip(random_noise(_rgb(x), mode="s&p", rng=seed, amount=c), 0, 1) * 255)


# ---- shot noise: the same Poisson distribution, sampled by inversion --------------------------

#: Guide-table resolution of the inversion sampler (buckets of the uniform per gray level).
_GUIDE = 256


@lru_cache(maxsize=8)
def poisson_tables(c: int) -> tuple[np.ndarray, np.ndarray]:
    """Per gray level v, for the library's rate (v / 255.) * c: the Poisson CDF (256, K) and a
    guide table (256, _GUIDE) holding, for each bucket j, the smallest k with CDF(k) > j / _GUIDE
    (where the search for a uniform in that bucket starts)."""
    from scipy.stats import poisson
    lam = (np.arange(256) / 255.) * c
    k = np.arange(int(c + 12 * np.sqrt(c) + 20) + 1)  # P(X > last k) < 1e-20 for every rate
    cdf = poisson.cdf(k[None, :], lam[:, None])
    cdf[:, -1] = 1.0  # the search always ends inside the table
    bucket = np.arange(_GUIDE) / _GUIDE
    guide = np.stack([np.searchsorted(row, bucket, side="right") for row in cdf]).astype(np.int64)
    return cdf, guide


@njit(nogil=True)
def poisson_by_inversion(levels, u, cdf, guide, c, out):
    """X = min{k : U < F(k)}, searched upward from the guide table's start for U's bucket, then
    the library's np.clip(X / c, 0, 1) * 255 and its final uint8 truncation, per channel."""
    nb = guide.shape[1]
    for r in range(levels.shape[0]):
        for col in range(levels.shape[1]):
            v = levels[r, col]
            row = cdf[v]
            for ch in range(u.shape[2]):
                uu = u[r, col, ch]
                k = guide[v, int(uu * nb)]
                while row[k] <= uu:
                    k += 1
                out[r, col, ch] = np.uint8(min(k / c, 1.0) * 255.0)
    return out


def shot_noise(x: np.ndarray, severity: int, seed: int) -> np.ndarray:
    """shot_noise: each channel of each pixel becomes Poisson(x / 255 * c) / c, as in the
    library, but drawn by inverting the Poisson CDF of the pixel's gray level with one uniform
    per value (a table per c) instead of numpy's legacy per-value rejection sampler: the same
    distribution, other random numbers, several times faster. The three channels still get
    independent draws before the gray conversion, as the library's 3-channel path does."""
    c = [60, 25, 12, 5, 3][severity - 1]
    u = np.random.default_rng(seed).random(x.shape + (3,))
    cdf, guide = poisson_tables(c)
    rgb = poisson_by_inversion(x, u, cdf, guide, c, np.empty(x.shape + (3,), np.uint8))
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
