"""ImageNet-C's four held-out (validation) corruptions: speckle noise, gaussian blur, spatter,
saturate, in the definitions of ``imagecorruptions-imaug``.

Every choice of the evaluation (decomposition temperature, OOD score, gate, thresholds) is
made on these, never on the 15 test corruptions (docs/evaluation.md). Like the test types,
they follow the library's 3-channel path on a gray face and are converted to gray as its
output was:

* speckle noise draws per channel (three channels here too);
* gaussian blur is the same per channel (computed once on the gray face);
* spatter draws one liquid layer per image but adds a coloured layer (pale turquoise water at
  severities 1-3, mud brown at 4-5), so it is computed on three channels;
* saturate scales the HSV saturation, which is 0 for a gray face: severities 1-3 change
  nothing, and 4-5 add a fixed saturation of hue 0 (red), which the gray conversion sees as a
  uniform 7% / 14% darkening. It is no shift of the face's content; the evaluation flags it.
"""
from __future__ import annotations

import cv2
import numpy as np


def _rgb(x: np.ndarray) -> np.ndarray:
    """The gray face as the library sees it: three equal channels, in [0, 1]."""
    return np.repeat(x[..., None], 3, axis=2) / 255.


def _to_gray(rgb: np.ndarray) -> np.ndarray:
    """float RGB in [0, 255] -> uint8 gray: the library's final uint8, then the gray conversion."""
    return cv2.cvtColor(np.uint8(rgb), cv2.COLOR_RGB2GRAY)


def speckle_noise(x: np.ndarray, severity: int, seed: int) -> np.ndarray:
    """Multiplicative Gaussian noise, drawn per channel."""
    c = [.15, .2, 0.35, 0.45, 0.6][severity - 1]
    x = _rgb(x)
    return _to_gray(np.clip(x + x * np.random.normal(size=x.shape, scale=c), 0, 1) * 255)


def gaussian_blur(x: np.ndarray, severity: int, seed: int) -> np.ndarray:
    """scikit-image's Gaussian filter (sigma 1-6, its default 'nearest' border)."""
    from skimage.filters import gaussian
    c = [1, 2, 3, 4, 6][severity - 1]
    return np.clip(gaussian(np.array(x) / 255., sigma=c), 0, 1) * 255


_SPATTER = [(0.65, 0.3, 4, 0.69, 0.6, 0), (0.65, 0.3, 3, 0.68, 0.6, 0),
            (0.65, 0.3, 2, 0.68, 0.5, 0), (0.65, 0.3, 1, 0.65, 1.5, 1),
            (0.67, 0.4, 1, 0.65, 1.5, 1)]


def _water(x: np.ndarray, liquid: np.ndarray, c: tuple) -> np.ndarray:
    """Severities 1-3: the library's water layer (edges of the liquid, pale turquoise)."""
    liquid = (liquid * 255).astype(np.uint8)
    dist = 255 - cv2.Canny(liquid, 50, 150)
    dist = cv2.distanceTransform(dist, cv2.DIST_L2, 5)
    _, dist = cv2.threshold(dist, 20, 20, cv2.THRESH_TRUNC)
    dist = cv2.blur(dist, (3, 3)).astype(np.uint8)
    dist = cv2.equalizeHist(dist)
    ker = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]])
    dist = cv2.filter2D(dist, cv2.CV_8U, ker)
    dist = cv2.blur(dist, (3, 3)).astype(np.float32)
    m = cv2.cvtColor(liquid * dist, cv2.COLOR_GRAY2BGRA)
    m /= np.max(m, axis=(0, 1))
    m *= c[4]
    ones = np.ones_like(m[..., :1])
    color = cv2.cvtColor(np.concatenate((175 / 255. * ones, 238 / 255. * ones, 238 / 255. * ones),
                                        axis=2), cv2.COLOR_BGR2BGRA)
    xa = cv2.cvtColor(x, cv2.COLOR_BGR2BGRA)
    return cv2.cvtColor(np.clip(xa + m * color, 0, 1), cv2.COLOR_BGRA2BGR) * 255


def _mud(x: np.ndarray, liquid: np.ndarray, c: tuple) -> np.ndarray:
    """Severities 4-5: the library's mud layer (blobs of the liquid, mud brown)."""
    from skimage.filters import gaussian
    m = np.where(liquid > c[3], 1, 0)
    m = gaussian(m.astype(np.float32), sigma=c[4])
    m[m < 0.8] = 0
    ones = np.ones_like(x[..., :1], dtype=np.float64)
    color = np.concatenate((63 / 255. * ones, 42 / 255. * ones, 20 / 255. * ones), axis=2)
    color *= m[..., np.newaxis]
    x = x * (1 - m[..., np.newaxis])
    return np.clip(x + color, 0, 1) * 255


def spatter(x: np.ndarray, severity: int, seed: int) -> np.ndarray:
    """Water (1-3) or mud (4-5) splashes: one liquid layer per face, coloured on 3 channels."""
    from skimage.filters import gaussian
    c = _SPATTER[severity - 1]
    rgb = np.repeat(np.asarray(x, np.float32)[..., None], 3, axis=2) / 255.
    liquid = np.random.normal(size=x.shape[:2], loc=c[0], scale=c[1])
    liquid = gaussian(liquid, sigma=c[2])
    liquid[liquid < c[3]] = 0
    out = _water(rgb, liquid, c) if c[5] == 0 else _mud(rgb, liquid, c)
    return _to_gray(out)


def saturate(x: np.ndarray, severity: int, seed: int) -> np.ndarray:
    """HSV saturation * c0 + c1 on the three equal channels (module docstring: what that does to
    a gray face), in closed form: a gray pixel has hue 0 and saturation 0, so the new saturation
    is c1 everywhere and scikit-image's hsv2rgb gives (v, v(1 - c1), v(1 - c1)) for every pixel:
    the library's output exactly (a test compares them), 40x cheaper than its colour
    conversions of a 224x224 face."""
    c = [(0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (20, 0.2)][severity - 1]
    v = np.asarray(x) / 255.
    s = float(np.clip(c[1], 0, 1))
    rgb = np.stack([v, v * (1 - s), v * (1 - s)], axis=2)
    return _to_gray(np.clip(rgb, 0, 1) * 255)
