"""ImageNet-C corruptions of 48x48 grayscale faces (15 types x 5 severities).

The definitions are those of ``imagecorruptions-imaug`` (Hendrycks & Dietterich's ImageNet-C,
ported; see ``frost/NOTICE.md``), implemented here so the evaluation needs no extra package:
the library itself requires opencv-python, a second ``cv2`` beside ours. They were designed for
224x224 colour images, so each face is upscaled to 224x224 (bicubic), corrupted as the library
corrupts a 3-channel image of it, converted back to gray and downscaled to 48x48 by area
averaging; the result is then prepared like any clean face.

Where the library's 3-channel computation is the same per channel (blur, weather but frost,
digital), it runs once on the gray face; the noise types and frost draw or blend per channel,
so they run on three channels and are converted to gray as the library's output was. Every
type gives the library's faces exactly except: zoom_blur and snow (within one gray level) and
shot noise (the same Poisson distribution, other random numbers: :func:`.noise.shot_noise`).
``tests/unit/evaluation/test_corruptions.py`` checks each against the library when it is
installed.

Randomness: every face gets its own seed derived from (seed, corruption, index), so a set is
identical however it is split across worker processes, and a face meets the same random draws
at every severity.
"""
from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable

import cv2
import numpy as np

from uar_stream.evaluation.corruptions import blur, digital, noise, validation, weather

#: The 15 ImageNet-C corruption types, in the benchmark's order (noise, blur, weather, digital).
CORRUPTIONS: tuple[str, ...] = (
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur",
    "motion_blur", "zoom_blur", "snow", "frost", "fog", "brightness", "contrast",
    "elastic_transform", "pixelate", "jpeg_compression",
)
SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)

#: A corruption: (uint8 gray (H, W) face, severity 1-5, the face's seed) -> the gray result in
#: [0, 255] (float or uint8) before the library's final uint8 truncation. numpy's global
#: generator is already seeded with the seed (the library draws from it).
Corruption = Callable[[np.ndarray, int, int], np.ndarray]

#: corruption name -> its implementation (every name in :data:`CORRUPTIONS`).
FUNCTIONS: dict[str, Corruption] = {
    "gaussian_noise": noise.gaussian_noise,
    "shot_noise": noise.shot_noise,
    "impulse_noise": noise.impulse_noise,
    "defocus_blur": blur.defocus_blur,
    "glass_blur": blur.glass_blur,
    "motion_blur": blur.motion_blur,
    "zoom_blur": blur.zoom_blur,
    "snow": weather.snow,
    "frost": weather.frost,
    "fog": weather.fog,
    "brightness": digital.brightness,
    "contrast": digital.contrast,
    "elastic_transform": digital.elastic_transform,
    "pixelate": digital.pixelate,
    "jpeg_compression": digital.jpeg_compression,
}

#: ImageNet-C's held-out corruptions: every evaluation choice is made on these
#: (corruptions/validation.py), never on the 15 test types, which are only reported.
VALIDATION: tuple[str, ...] = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
VALIDATION_FUNCTIONS: dict[str, Corruption] = {name: getattr(validation, name) for name in VALIDATION}
#: (type, severity) sets whose faces equal the resampling round trip alone, face for face:
#: saturate at 1-3 scales a gray face's zero saturation (corruptions/validation.py; a test
#: checks the equality). The evaluation reuses the round trip's scores for them.
SAME_AS_RESAMPLING = frozenset({("saturate", 1), ("saturate", 2), ("saturate", 3)})
#: Every implemented type (test and validation) -> its implementation.
ALL_FUNCTIONS: dict[str, Corruption] = {**FUNCTIONS, **VALIDATION_FUNCTIONS}

#: Corruptions that draw other random numbers than the library from the same distribution (so
#: they are tested for their distribution and strength, not for equality with the library).
SAME_DISTRIBUTION = frozenset({"shot_noise"})

#: Side the corruption definitions were designed for (ImageNet-C: 224x224).
WORK_SIZE = 224

#: Bump when the corrupted faces change, so cached sets are regenerated.
PIPELINE_VERSION = 4


def upscale(face: np.ndarray, size: int = WORK_SIZE) -> np.ndarray:
    """uint8 (S, S) -> uint8 (size, size), bicubic (the smallest round-trip error among
    OpenCV's smooth interpolators after area downscaling)."""
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
                 native: bool = False) -> np.ndarray:
    """One uint8 (S, S) gray face -> the corrupted uint8 (S, S) face: at 224 and back (the
    paper's protocol), or with ``native`` on the face's own S x S grid (pixel-level types in
    protocol v2: at 224, area downscaling averages their shift away). Raises ValueError for an
    unknown name or a severity outside 1-5."""
    fn = ALL_FUNCTIONS.get(name)
    if fn is None:
        raise ValueError(f"unknown corruption {name!r}; allowed: {', '.join(ALL_FUNCTIONS)}")
    if severity not in SEVERITIES:
        raise ValueError(f"severity {severity!r} is out of range; allowed: 1-5")
    np.random.seed(seed)  # the library draws from numpy's global generator
    if native:
        return np.uint8(fn(face, severity, seed))
    gray = np.uint8(fn(upscale(face), severity, seed))  # the library truncates the same way
    return downscale(gray, face.shape[0])


def corrupt_faces(faces: np.ndarray, name: str, severity: int, seed: int = 0,
                  start: int = 0, native: bool = False, index: np.ndarray | None = None) -> np.ndarray:
    """uint8 (N, S, S) -> corrupted uint8 (N, S, S); ``start`` offsets the per-face seeds
    (a chunk of a larger set); ``index``: instead, each face's row in the larger set (a
    sample of it), so a face gets the same draws as there; ``native``: on the faces' own grid
    (:func:`corrupt_face`)."""
    rows = np.arange(start, start + len(faces)) if index is None else np.asarray(index)
    if len(rows) != len(faces):
        raise ValueError(f"index: {len(rows)} rows for {len(faces)} faces")
    out = np.empty_like(faces)
    for i, face in enumerate(faces):
        out[i] = corrupt_face(face, name, severity, face_seed(seed, name, int(rows[i])), native)
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
