"""Blur corruptions: defocus, glass, motion and zoom blur, on one channel.

Each is the same computation on every colour channel in the library, so a gray face is blurred
once; all but zoom_blur give the library's values exactly.
"""
from __future__ import annotations

import cv2
import numpy as np
from numba import njit

from uar_stream.evaluation.corruptions.ops import disk, motion_blur_2d, zoom_crop


def defocus_blur(x: np.ndarray, severity: int, seed: int) -> np.ndarray:
    """A disk kernel of growing radius (the library's defocus)."""
    c = [(3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)][severity - 1]
    x = np.array(x) / 255.
    return np.clip(cv2.filter2D(x, -1, disk(radius=c[0], alias_blur=c[1])), 0, 1) * 255


@njit(nogil=True)
def _glass_shuffle(x, delta, iterations, seed):
    # The library's loop, with the same draws from numba's generator. Its "swap" assigns two
    # pixel *views* of an (H, W, C) array in turn, so it only copies x[h', w'] into x[h, w].
    np.random.seed(seed)
    for _ in range(iterations):
        for h in range(x.shape[0] - delta, delta, -1):
            for w in range(x.shape[1] - delta, delta, -1):
                # two scalar draws: the same numbers as the library's size=(2,) array, without
                # its allocation per pixel
                dx = np.random.randint(-delta, delta)
                dy = np.random.randint(-delta, delta)
                x[h, w] = x[h + dy, w + dx]
    return x


def glass_blur(x: np.ndarray, severity: int, seed: int) -> np.ndarray:
    """The library's Gaussian, local pixel shuffle (seeded with the face's seed) and Gaussian."""
    from skimage.filters import gaussian
    sigma, delta, iterations = [(0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)][severity - 1]
    x = np.uint8(gaussian(x / 255., sigma=sigma) * 255)
    x = _glass_shuffle(x, delta, iterations, seed)
    return np.clip(gaussian(x / 255., sigma=sigma), 0, 1) * 255


def motion_blur(x: np.ndarray, severity: int, seed: int) -> np.ndarray:
    """A one-sided Gaussian streak at a random angle (the library's motion blur)."""
    c = [(10, 3), (15, 5), (15, 8), (15, 12), (20, 15)][severity - 1]
    angle = np.random.uniform(-45, 45)
    return np.clip(motion_blur_2d(x, radius=c[0], sigma=c[1], angle=angle), 0, 255)


def zoom_blur(x: np.ndarray, severity: int, seed: int) -> np.ndarray:
    """The mean of the face and its centre zooms, with OpenCV affine warps in place of scipy's
    zoom (the same coordinate mapping, but OpenCV's 1/32-pixel interpolation table: within one
    gray level of the library, and much faster: the blur sums up to 16 zooms of the face)."""
    factors = [np.arange(1, 1.11, 0.01), np.arange(1, 1.16, 0.01), np.arange(1, 1.21, 0.02),
               np.arange(1, 1.26, 0.02), np.arange(1, 1.31, 0.03)][severity - 1]
    x = x.astype(np.float32) / 255.0
    h, w = x.shape
    out = np.zeros_like(x)
    for z in factors:
        crop, n0, n1 = zoom_crop(x, z)
        ch0, ch1 = crop.shape
        s0, s1 = (ch0 - 1) / max(n0 - 1, 1), (ch1 - 1) / max(n1 - 1, 1)
        m = np.array([[s1, 0.0, 0.0], [0.0, s0, 0.0]], dtype=np.float64)
        layer = cv2.warpAffine(crop, m, (n1, n0), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_REPLICATE)
        out[:min(h, n0), :min(w, n1)] += layer[:h, :w]
    x = (x + out) / (len(factors) + 1)
    return np.clip(x, 0, 1) * 255
