"""Digital corruptions: brightness, contrast, elastic transform, pixelate, JPEG compression.

All are the same computation on every colour channel in the library (brightness: for R = G = B
its HSV round trip only adds c to V), so a gray face is processed once; each gives the
library's values exactly.
"""
from __future__ import annotations

import cv2
import numpy as np

from uar_stream.errors import UarError
from uar_stream.evaluation.corruptions.ops import (
    box_resize,
    nearest_resize,
    remap_linear,
)


def brightness(x: np.ndarray, severity: int, seed: int) -> np.ndarray:
    """Add c to every value (for R = G = B, the library's HSV round trip does only that)."""
    c = [.1, .2, .3, .4, .5][severity - 1]
    return np.clip(np.clip(np.array(x) / 255. + c, 0, 1), 0, 1) * 255


def contrast(x: np.ndarray, severity: int, seed: int) -> np.ndarray:
    """Scale the deviations from the face's mean by c."""
    c = [0.4, .3, .2, .1, .05][severity - 1]
    x = np.array(x) / 255.
    means = np.mean(x, axis=(0, 1), keepdims=True)
    return np.clip((x - means) * c + means, 0, 1) * 255


def elastic_transform(x: np.ndarray, severity: int, seed: int) -> np.ndarray:
    """Smoothed random displacements (the library's draws and smoothing), then a bilinear
    remap with scipy's 'reflect' border."""
    from skimage.filters import gaussian
    image = np.array(x, dtype=np.float32) / 255.
    shape = image.shape
    sigma = np.array(shape[:2]) * 0.01
    alpha = [250 * 0.05, 250 * 0.065, 250 * 0.085, 250 * 0.1, 250 * 0.12][severity - 1]
    max_dx = max_dy = shape[0] * 0.005
    dx = (gaussian(np.random.uniform(-max_dx, max_dx, size=shape[:2]),
                   sigma, mode='reflect', truncate=3) * alpha).astype(np.float32)
    dy = (gaussian(np.random.uniform(-max_dy, max_dy, size=shape[:2]),
                   sigma, mode='reflect', truncate=3) * alpha).astype(np.float32)
    return np.clip(remap_linear(image, dy, dx), 0, 1) * 255


def pixelate(x: np.ndarray, severity: int, seed: int) -> np.ndarray:
    """Box-downscale by c and nearest-upscale back, with Pillow's arithmetic (the library
    resizes a PIL image)."""
    c = [0.6, 0.5, 0.4, 0.3, 0.25][severity - 1]
    h, w = x.shape
    return nearest_resize(box_resize(x, int(w * c), int(h * c)), w, h)


def jpeg_compression(x: np.ndarray, severity: int, seed: int) -> np.ndarray:
    """A baseline JPEG round trip at quality c. The library saves an RGB PIL image; for
    R = G = B its luma is the gray face and its chroma is flat, so a gray JPEG from OpenCV's
    libjpeg-turbo (the same quality scaling and integer DCT) decodes to the same pixels."""
    q = [25, 18, 15, 10, 7][severity - 1]
    ok, buf = cv2.imencode(".jpg", x, [cv2.IMWRITE_JPEG_QUALITY, q])
    out = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE) if ok else None
    if out is None:
        raise UarError("jpeg_compression: this OpenCV build cannot encode/decode JPEG")
    return out
