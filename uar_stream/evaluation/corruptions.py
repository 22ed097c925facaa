"""ImageNet-C corruptions of 48x48 grayscale faces (15 types x 5 severities).

The definitions (``imagecorruptions-imaug``) were designed for 224x224 colour images, so each
face is upscaled to 224x224 (bicubic), corrupted as a 3-channel image, converted back to gray
and downscaled to 48x48 by area averaging; the result is then prepared like any clean face.

Speed: most corruptions repeat the same work on three identical channels, and a few of the
library's helpers waste time per call; :mod:`.corruption_fast` holds the gray fast paths, each
checked against the library's 3-channel path by ``tests/test_corruptions.py``.

Randomness: every face gets its own seed derived from (seed, corruption, index), so a set is
identical however it is split across worker processes, and a face meets the same random draws
at every severity.
"""
from __future__ import annotations

import hashlib
import zlib

import cv2
import numpy as np

from uar_stream.evaluation.corruption_fast import GRAY_FAST

#: The 15 ImageNet-C corruption types, in the benchmark's order (noise, blur, weather, digital).
CORRUPTIONS: tuple[str, ...] = (
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur",
    "motion_blur", "zoom_blur", "snow", "frost", "fog", "brightness", "contrast",
    "elastic_transform", "pixelate", "jpeg_compression",
)
SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)

#: Side the corruption definitions were designed for (ImageNet-C: 224x224).
WORK_SIZE = 224

#: Bump when the corruption pipeline changes, so cached sets are regenerated.
PIPELINE_VERSION = 4


def upscale(face: np.ndarray, size: int = WORK_SIZE) -> np.ndarray:
    """uint8 (S, S) -> uint8 (size, size), bicubic (the smallest round-trip error among
    OpenCV's smooth interpolators: 1.7 gray levels mean on FER+ after area downscaling)."""
    return cv2.resize(face, (size, size), interpolation=cv2.INTER_CUBIC)


def downscale(img: np.ndarray, size: int) -> np.ndarray:
    """uint8 (H, W) -> uint8 (size, size) by area averaging."""
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)


def face_seed(seed: int, name: str, index: int) -> int:
    """A 32-bit seed for one face, independent of how the set is chunked. The same at every
    severity (common random numbers: a face gets the same noise pattern, frost crop or shuffle
    at each severity, so severities differ only in strength)."""
    return zlib.crc32(f"{seed}:{name}:{index}".encode()) & 0x7FFFFFFF


def corrupt_face(face: np.ndarray, name: str, severity: int, seed: int,
                 reference: bool = False) -> np.ndarray:
    """One uint8 (S, S) gray face -> the corrupted uint8 (S, S) face.

    ``reference=True`` always takes the library's 3-channel path (used by the tests that check
    the fast paths)."""
    from imagecorruptions import corrupt

    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; allowed: {', '.join(CORRUPTIONS)}")
    np.random.seed(seed)  # the library draws from numpy's global generator
    up = upscale(face)
    fast = None if reference else GRAY_FAST.get(name)
    if fast is not None:
        gray = np.uint8(fast(up, severity, seed))  # the library truncates the same way
    else:
        kwargs = {"seed": seed} if name in ("glass_blur", "impulse_noise") else {}
        rgb = corrupt(np.stack([up] * 3, axis=-1), severity=severity, corruption_name=name, **kwargs)
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return downscale(gray, face.shape[0])


def corrupt_faces(faces: np.ndarray, name: str, severity: int, seed: int = 0,
                  start: int = 0) -> np.ndarray:
    """uint8 (N, S, S) -> corrupted uint8 (N, S, S); ``start`` offsets the per-face seeds
    (a chunk of a larger set)."""
    out = np.empty_like(faces)
    for i, face in enumerate(faces):
        out[i] = corrupt_face(face, name, severity, face_seed(seed, name, start + i))
    return out


def resample_only(faces: np.ndarray) -> np.ndarray:
    """The up/down round trip without any corruption: a control for what resampling alone
    does to the uncertainties."""
    return np.stack([downscale(upscale(f), f.shape[0]) for f in faces])


def images_key(images: np.ndarray) -> str:
    """Content hash of a face array (keys the corruption cache)."""
    h = hashlib.sha256(np.ascontiguousarray(images).tobytes())
    h.update(str(images.shape).encode())
    return h.hexdigest()
