"""Fast paths of ``imagecorruptions-imaug`` for gray faces.

The evaluation corrupts 3,553 faces x 75 sets, so the library's per-call waste adds up to
minutes. A gray face upscaled to 224x224 has three identical channels, so wherever the library's
3-channel computation is the same per channel, these functions run it once on one channel; where
a helper is slow for reasons unrelated to the definition they re-implement it with the same
random draws and the same arithmetic:

* frost re-read and re-resized one of six texture files on every call (3-4 ms): cached here;
* glass_blur's numba pixel loop allocated a 2-element array per pixel; here it draws scalars;
* snow and motion_blur shifted the image with ``np.roll`` plus a copy per kernel tap; here a
  numba loop reads each tap from one edge-padded copy and sums in the same order;
* snow's ``scipy.ndimage.zoom(order=1)`` is replaced by the same corner-aligned linear
  interpolation done separably (equal up to float64 rounding);
* elastic_transform's ``map_coordinates(order=1)`` builds three full index grids and runs a
  generic spline loop; here a numba loop computes the same bilinear sum for every pixel whose
  four neighbours lie inside the image, and scipy itself handles the few near the border;
* zoom_blur warps with OpenCV instead of scipy's zoom (same mapping, but OpenCV's 1/32-pixel
  interpolation table: within one gray level of the library).

One path is not draw-for-draw equal: shot noise (the costliest corruption, ~25% of all the
corruption time) samples the same Poisson distribution by CDF inversion (:func:`shot_noise`).

``tests/test_corruptions.py`` checks every other entry of :data:`GRAY_FAST` against the
library's 3-channel path (``corrupt_face(..., reference=True)``), and shot noise's sampler
against the Poisson distribution and its faces' strength against the library's.

Every function takes the upscaled uint8 gray face, the severity and the face's seed (numpy's
global generator is already seeded with it) and returns the gray result before the library's
final ``np.uint8``.
"""
from __future__ import annotations

import importlib.resources
import math
from functools import cache, lru_cache

import cv2
import numpy as np
from numba import njit

from uar_stream.errors import UarError

# ---- helpers ------------------------------------------------------------------------------

def motion_blur(x: np.ndarray, radius: int, sigma: float, angle: float) -> np.ndarray:
    """``imagecorruptions.corruptions._motion_blur`` of a 2-D image: the same taps and float64
    sums, in the same order (bit-equal). Its ``shift`` replicates the edge pixel, which is what
    reading an edge-padded copy gives for shifts up to the kernel width."""
    from imagecorruptions.corruptions import (
        getMotionBlurKernel,
        getOptimalKernelWidth1D,
    )

    width = getOptimalKernelWidth1D(radius, sigma)
    kernel = getMotionBlurKernel(width, sigma)
    point = (width * np.sin(np.deg2rad(angle)), width * np.cos(np.deg2rad(angle)))
    hypot = math.hypot(point[0], point[1])
    h, w = x.shape
    dys, dxs = [], []
    for i in range(width):
        dy = -math.ceil(((i * point[0]) / hypot) - 0.5)
        dx = -math.ceil(((i * point[1]) / hypot) - 0.5)
        if abs(dy) >= h or abs(dx) >= w:
            break
        dys.append(dy)
        dxs.append(dx)
    padded = np.pad(x, width, mode="edge")
    return _sum_taps(padded, width, h, w, kernel, np.array(dys, np.int64), np.array(dxs, np.int64))


@njit(nogil=True)
def _sum_taps(padded, p, h, w, kernel, dys, dxs):
    # out += k * shifted, tap by tap: the library's float64 products and sums in its order (the
    # library starts from float32 zeros, which become float64 at the first tap).
    out = np.zeros((h, w))
    for i in range(len(dys)):
        k = kernel[i]
        oy = p - dys[i]
        ox = p - dxs[i]
        for r in range(h):
            row = out[r]  # row views let LLVM vectorise the inner loop (4-5x)
            src = padded[oy + r, ox:ox + w]
            for c in range(w):
                row[c] += k * src[c]
    return out


@lru_cache(maxsize=128)
def _linear_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # scipy.ndimage.zoom(order=1, grid_mode=False): output o samples input o * (n_in-1)/(n_out-1).
    scale = (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
    coord = np.arange(n_out) * scale
    i0 = np.clip(np.floor(coord).astype(np.intp), 0, max(n_in - 2, 0))
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, coord - i0


def _zoom_crop(img: np.ndarray, zoom_factor: float) -> tuple[np.ndarray, int, int]:
    """clipped_zoom's centre crop of ceil(side / z) and the size scipy zooms it to."""
    h, w = img.shape
    ch0, ch1 = int(np.ceil(h / float(zoom_factor))), int(np.ceil(w / float(zoom_factor)))
    top0, top1 = (h - ch0) // 2, (w - ch1) // 2
    return (img[top0:top0 + ch0, top1:top1 + ch1],
            int(round(ch0 * zoom_factor)), int(round(ch1 * zoom_factor)))


def clipped_zoom(img: np.ndarray, zoom_factor: float) -> np.ndarray:
    """``imagecorruptions.corruptions.clipped_zoom`` of a 2-D image (the centre crop zoomed by
    z with linear interpolation; the output is not cropped back)."""
    crop, n0, n1 = _zoom_crop(img, zoom_factor)
    r0, r1, tr = _linear_taps(crop.shape[0], n0)
    c0, c1, tc = _linear_taps(crop.shape[1], n1)
    rows = crop[r0] * (1 - tr)[:, None] + crop[r1] * tr[:, None]
    return rows[:, c0] * (1 - tc) + rows[:, c1] * tc


# ---- the corruptions ----------------------------------------------------------------------

def zoom_blur(x: np.ndarray, severity: int, seed: int) -> np.ndarray:
    """zoom_blur with OpenCV affine warps in place of scipy's zoom (same coordinate mapping;
    agrees to ~1 gray level, 10x faster: the blur sums up to 16 zooms of the face)."""
    factors = [np.arange(1, 1.11, 0.01), np.arange(1, 1.16, 0.01), np.arange(1, 1.21, 0.02),
               np.arange(1, 1.26, 0.02), np.arange(1, 1.31, 0.03)][severity - 1]
    x = x.astype(np.float32) / 255.0
    h, w = x.shape
    out = np.zeros_like(x)
    for z in factors:
        crop, n0, n1 = _zoom_crop(x, z)
        ch0, ch1 = crop.shape
        s0, s1 = (ch0 - 1) / max(n0 - 1, 1), (ch1 - 1) / max(n1 - 1, 1)
        m = np.array([[s1, 0.0, 0.0], [0.0, s0, 0.0]], dtype=np.float64)
        layer = cv2.warpAffine(crop, m, (n1, n0), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_REPLICATE)
        out[:min(h, n0), :min(w, n1)] += layer[:h, :w]
    x = (x + out) / (len(factors) + 1)
    return np.clip(x, 0, 1) * 255


def _library_gray(fn_name: str):
    """The library function called on a 2-D image (its own gray branch), where that branch is
    the per-channel computation of the 3-channel one."""
    def run(x: np.ndarray, severity: int, seed: int) -> np.ndarray:
        from imagecorruptions import corruptions as c
        return getattr(c, fn_name)(x, severity)
    return run


def motion_blur_corruption(x: np.ndarray, severity: int, seed: int) -> np.ndarray:
    # The library's 2-D branch crashes (indexes shape[2]); its blur is channel-agnostic.
    c = [(10, 3), (15, 5), (15, 8), (15, 12), (20, 15)][severity - 1]
    angle = np.random.uniform(-45, 45)
    return np.clip(motion_blur(x, radius=c[0], sigma=c[1], angle=angle), 0, 255)


@njit(nogil=True)
def _glass_shuffle(x, delta, iterations, seed):
    # The library's loop, with the same draws from numba's generator. Its "swap" assigns two
    # pixel *views* of an (H, W, C) array in turn, so it only copies x[h', w'] into x[h, w].
    np.random.seed(seed)
    for _ in range(iterations):
        for h in range(x.shape[0] - delta, delta, -1):
            for w in range(x.shape[1] - delta, delta, -1):
                # two scalar draws: the same numbers as the library's size=(2,) array, no
                # allocation per pixel
                dx = np.random.randint(-delta, delta)
                dy = np.random.randint(-delta, delta)
                x[h, w] = x[h + dy, w + dx]
    return x


def glass_blur(x: np.ndarray, severity: int, seed: int) -> np.ndarray:
    """glass_blur on one channel: the same Gaussian, shuffle and Gaussian."""
    from skimage.filters import gaussian
    sigma, delta, iterations = [(0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)][severity - 1]
    x = np.uint8(gaussian(x / 255., sigma=sigma) * 255)
    x = _glass_shuffle(x, delta, iterations, seed)
    return np.clip(gaussian(x / 255., sigma=sigma), 0, 1) * 255


_FROST_FILES = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg", "frost6.jpg")


@cache
def _frost_texture(idx: int, h: int, w: int) -> np.ndarray:
    """The library's frost texture ``idx`` (BGR), rescaled for an (h, w) image as it does."""
    ref = importlib.resources.files("imagecorruptions") / "frost" / _FROST_FILES[idx]
    with importlib.resources.as_file(ref) as path:
        tex = cv2.imread(str(path))
    if tex is None:
        raise UarError(f"imagecorruptions' frost texture is missing or unreadable: {ref} "
                       "(reinstall imagecorruptions-imaug)")
    fh, fw = tex.shape[:2]
    scale = 1.0
    if fh < h and fw >= w:
        scale = h / fh
    elif fh >= h and fw < w:
        scale = w / fw
    elif fh < h and fw < w:
        scale = max(h / fh, w / fw)
    scale *= 1.1
    size = (int(np.ceil(fw * scale)), int(np.ceil(fh * scale)))
    return cv2.resize(tex, dsize=size, interpolation=cv2.INTER_CUBIC)


def frost(x: np.ndarray, severity: int, seed: int) -> np.ndarray:
    """frost with the texture cached; the blend is still per colour channel (the texture is
    not gray), then converted to gray like the library's output."""
    c = [(1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75)][severity - 1]
    h, w = x.shape
    tex = _frost_texture(np.random.randint(6), h, w)
    top, left = np.random.randint(0, tex.shape[0] - h), np.random.randint(0, tex.shape[1] - w)
    crop = tex[top:top + h, left:left + w][..., [2, 1, 0]]
    rgb = np.uint8(np.clip(c[0] * x[..., None] + c[1] * crop, 0, 255))
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def snow(x: np.ndarray, severity: int, seed: int) -> np.ndarray:
    """The library's 2-D snow branch (it blends with x itself where the 3-channel one uses
    gray(x) == x), with the fast zoom and motion blur."""
    c = [(0.1, 0.3, 3, 0.5, 10, 4, 0.8), (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
         (0.55, 0.3, 4, 0.9, 12, 8, 0.7), (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
         (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55)][severity - 1]
    x = np.array(x, dtype=np.float32) / 255.
    layer = np.random.normal(size=x.shape[:2], loc=c[0], scale=c[1])
    layer = clipped_zoom(layer, c[2])
    layer[layer < c[3]] = 0
    layer = np.clip(layer, 0, 1)
    layer = motion_blur(layer, radius=c[4], sigma=c[5], angle=np.random.uniform(-135, -45))
    layer = np.round(layer * 255).astype(np.uint8) / 255.
    layer = layer[:x.shape[0], :x.shape[1]]
    x = c[6] * x + (1 - c[6]) * np.maximum(x, x * 1.5 + 0.5)
    return np.clip(x + layer + np.rot90(layer, k=2), 0, 1) * 255


@njit(nogil=True)
def _bilinear_inside(img, dy, dx, out, border):
    # map_coordinates(order=1) at (r + dy, c + dx): the same float64 weights and sum, rounded
    # to the image's float32 (tests: bit-equal). Pixels needing a neighbour outside the image
    # are left to scipy's 'reflect' handling (``border``).
    h, w = img.shape
    for r in range(h):
        for c in range(w):
            cy = np.float64(r) + np.float64(dy[r, c])
            cx = np.float64(c) + np.float64(dx[r, c])
            y0 = int(np.floor(cy))
            x0 = int(np.floor(cx))
            if y0 < 0 or x0 < 0 or y0 >= h - 1 or x0 >= w - 1:
                border[r, c] = True
                continue
            ty = cy - y0
            tx = cx - x0
            wy0 = 1.0 - ty
            wx0 = 1.0 - tx
            v = (np.float64(img[y0, x0]) * wy0 * wx0 + np.float64(img[y0, x0 + 1]) * wy0 * tx
                 + np.float64(img[y0 + 1, x0]) * ty * wx0 + np.float64(img[y0 + 1, x0 + 1]) * ty * tx)
            out[r, c] = np.float32(v)
    return out


def remap_linear(img: np.ndarray, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """``map_coordinates(img, (rows + dy, cols + dx), order=1, mode='reflect')`` of a 2-D float32
    image, as elastic_transform calls it."""
    from scipy.ndimage import map_coordinates
    out = np.empty_like(img)
    border = np.zeros(img.shape, np.bool_)
    _bilinear_inside(img, dy, dx, out, border)
    rr, cc = np.nonzero(border)
    if len(rr):
        coords = np.stack([rr + dy[rr, cc].astype(np.float64), cc + dx[rr, cc].astype(np.float64)])
        out[rr, cc] = map_coordinates(img, coords, order=1, mode="reflect")
    return out


def elastic_transform(x: np.ndarray, severity: int, seed: int) -> np.ndarray:
    """The library's 2-D elastic_transform branch (the same draws and smoothing) with the fast
    bilinear remap."""
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
def _poisson_by_inversion(levels, u, cdf, guide, c, out):
    # X = min{k : U < F(k)}, searched upward from the guide table's start for U's bucket, then
    # the library's np.clip(X / c, 0, 1) * 255 and its final uint8 truncation, per channel.
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
    distribution, other random numbers, ~5x faster. The three channels still get independent
    draws before the gray conversion, as the library's 3-channel path does."""
    c = [60, 25, 12, 5, 3][severity - 1]
    u = np.random.default_rng(seed).random(x.shape + (3,))
    cdf, guide = poisson_tables(c)
    rgb = _poisson_by_inversion(x, u, cdf, guide, c, np.empty(x.shape + (3,), np.uint8))
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


#: Corruptions whose fast path draws other random numbers from the same distribution (so they
#: are tested for their distribution and strength, not for equality with the library).
SAME_DISTRIBUTION = {"shot_noise"}

#: corruption name -> fast gray path (others run the library's 3-channel path).
GRAY_FAST = {
    "glass_blur": glass_blur,
    "zoom_blur": zoom_blur,
    # for R = G = B the HSV round trip only adds c to V: the gray branch computes just that
    "brightness": _library_gray("brightness"),
    "defocus_blur": _library_gray("defocus_blur"),
    "contrast": _library_gray("contrast"),
    "fog": _library_gray("fog"),
    "elastic_transform": elastic_transform,
    "snow": snow,
    "frost": frost,
    "motion_blur": motion_blur_corruption,
    "shot_noise": shot_noise,
}
