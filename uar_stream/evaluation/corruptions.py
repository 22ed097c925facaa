"""ImageNet-C corruptions of 48x48 grayscale faces (15 types x 5 severities).

The definitions (``imagecorruptions-imaug``) were designed for 224x224 colour images, so each
face is upscaled to 224x224 (bicubic), corrupted as a 3-channel image, converted back to gray
and downscaled to 48x48 by area averaging; the result is then prepared like any clean face.

Speed: a few corruptions spend most of their time repeating the same work on three identical
channels. For those, :data:`_GRAY_FAST` runs the library's own helpers on one channel, which is
the same computation for a gray image (``tests/test_corruptions.py`` checks each fast path
against the 3-channel reference). ``zoom_blur`` (about 40% of the total) also swaps scipy's
``zoom`` for an OpenCV affine warp with the same coordinate mapping (agrees to ~1 gray level).

Randomness: every face gets its own seed derived from (seed, corruption, index), so a set is
identical however it is split across worker processes, and a face meets the same random draws
at every severity.
"""
from __future__ import annotations

import hashlib
import zlib

import cv2
import numpy as np

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
PIPELINE_VERSION = 3


def upscale(face: np.ndarray, size: int = WORK_SIZE) -> np.ndarray:
    """uint8 (S, S) -> uint8 (size, size), bicubic (the smallest round-trip error among
    OpenCV's smooth interpolators: 1.7 gray levels mean on FER+ after area downscaling)."""
    return cv2.resize(face, (size, size), interpolation=cv2.INTER_CUBIC)


def downscale(img: np.ndarray, size: int) -> np.ndarray:
    """uint8 (H, W) -> uint8 (size, size) by area averaging."""
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)


# ---- single-channel fast paths (same computation as the library on a gray image) ----------

def _zoom_blur_gray(x: np.ndarray, severity: int, seed: int) -> np.ndarray:
    # Same factors as imagecorruptions' zoom_blur.
    factors = [np.arange(1, 1.11, 0.01), np.arange(1, 1.16, 0.01), np.arange(1, 1.21, 0.02),
               np.arange(1, 1.26, 0.02), np.arange(1, 1.31, 0.03)][severity - 1]
    x = x.astype(np.float32) / 255.0
    h, w = x.shape
    out = np.zeros_like(x)
    for z in factors:
        # clipped_zoom: centre crop of ceil(side / z), zoomed by z with scipy's corner-aligned
        # linear mapping (output o -> input o * (n_in - 1) / (n_out - 1)), cropped to (h, w).
        ch0, ch1 = int(np.ceil(h / z)), int(np.ceil(w / z))
        top0, top1 = (h - ch0) // 2, (w - ch1) // 2
        crop = x[top0:top0 + ch0, top1:top1 + ch1]
        n0, n1 = int(round(ch0 * z)), int(round(ch1 * z))
        s0, s1 = (ch0 - 1) / max(n0 - 1, 1), (ch1 - 1) / max(n1 - 1, 1)
        m = np.array([[s1, 0.0, 0.0], [0.0, s0, 0.0]], dtype=np.float64)
        layer = cv2.warpAffine(crop, m, (n1, n0), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_REPLICATE)
        out[:min(h, n0), :min(w, n1)] += layer[:h, :w]
    x = (x + out) / (len(factors) + 1)
    return np.clip(x, 0, 1) * 255


def _brightness_gray(x: np.ndarray, severity: int, seed: int) -> np.ndarray:
    # For R = G = B the HSV round trip only adds c to V: the library's own gray branch.
    from imagecorruptions.corruptions import brightness
    return brightness(x, severity)


def _library_gray(fn_name: str):
    """The library function called on a 2-D image (its own gray branch), where that branch is
    the per-channel computation of the 3-channel one."""
    def run(x: np.ndarray, severity: int, seed: int) -> np.ndarray:
        from imagecorruptions import corruptions as c
        return getattr(c, fn_name)(x, severity)
    return run


def _motion_blur_gray(x: np.ndarray, severity: int, seed: int) -> np.ndarray:
    # motion_blur's 2-D branch crashes (indexes shape[2]); its kernel helper is channel-agnostic.
    from imagecorruptions.corruptions import _motion_blur
    c = [(10, 3), (15, 5), (15, 8), (15, 12), (20, 15)][severity - 1]
    angle = np.random.uniform(-45, 45)
    return np.clip(_motion_blur(x, radius=c[0], sigma=c[1], angle=angle), 0, 255)


def _glass_blur_gray(x: np.ndarray, severity: int, seed: int) -> np.ndarray:
    # A (H, W, 1) image: the same blur and pixel shuffle (the shuffle draws per position, not
    # per channel), a third of the Gaussian work.
    from imagecorruptions.corruptions import glass_blur
    return glass_blur(x[..., None].copy(), severity, seed=seed)[..., 0]


_GRAY_FAST = {
    "glass_blur": _glass_blur_gray,
    "zoom_blur": _zoom_blur_gray,
    "brightness": _brightness_gray,
    "defocus_blur": _library_gray("defocus_blur"),
    "contrast": _library_gray("contrast"),
    "fog": _library_gray("fog"),
    "elastic_transform": _library_gray("elastic_transform"),
    # snow's 2-D branch blends with x itself where the 3-channel one uses gray(x) == x.
    "snow": _library_gray("snow"),
    "motion_blur": _motion_blur_gray,
}


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
    fast = None if reference else _GRAY_FAST.get(name)
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
