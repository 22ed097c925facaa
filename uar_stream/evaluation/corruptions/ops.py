"""Image operations the corruptions share: the ImageNet-C helpers of ``imagecorruptions-imaug``
(motion-blur kernel, clipped zoom, defocus disk, bilinear remap, box resampling), rewritten for
2-D gray images with the library's arithmetic, so the corruptions built on them give the
library's faces (``tests/unit/evaluation/test_corruptions.py`` compares each helper with the
library's own).

Where the library's helper was slow for reasons unrelated to the definition, the rewrite is
faster but computes the same numbers:

* motion blur shifted the image with ``np.roll`` plus a copy per kernel tap; here a numba loop
  reads each tap from one edge-padded copy and sums in the same order;
* the clipped zoom's ``scipy.ndimage.zoom(order=1)`` is the same corner-aligned linear
  interpolation done separably (equal up to float64 rounding);
* ``map_coordinates(order=1)`` built three full index grids and ran a generic spline loop; here
  a numba loop computes the same bilinear sum for every pixel whose four neighbours lie inside
  the image, and scipy itself handles the few near the border.
"""
from __future__ import annotations

import math
from functools import lru_cache

import cv2
import numpy as np
from numba import njit

# ---- motion blur ------------------------------------------------------------------------------

def motion_blur_kernel(width: int, sigma: float) -> np.ndarray:
    """The library's one-sided Gaussian taps (``getMotionBlurKernel``), summing to 1."""
    x = np.arange(width)
    k = np.exp(-(x - 0) ** 2 / (2 * (sigma ** 2))) / (np.sqrt(2 * np.pi) * sigma)
    return k / np.sum(k)


def motion_blur_2d(x: np.ndarray, radius: int, sigma: float, angle: float) -> np.ndarray:
    """The library's ``_motion_blur`` of a 2-D image: the same taps and float64 sums, in the same
    order (bit-equal). Its ``shift`` replicates the edge pixel, which is what reading an
    edge-padded copy gives for shifts up to the kernel width."""
    width = radius * 2 + 1  # getOptimalKernelWidth1D
    kernel = motion_blur_kernel(width, sigma)
    point = (width * np.sin(np.deg2rad(angle)), width * np.cos(np.deg2rad(angle)))
    hypot = math.hypot(point[0], point[1])
    h, w = x.shape
    dys, dxs = [], []
    for i in range(width):
        dy = -math.ceil(((i * point[0]) / hypot) - 0.5)
        dx = -math.ceil(((i * point[1]) / hypot) - 0.5)
        if abs(dy) >= h or abs(dx) >= w:
            break  # the library stops where the motion leaves the image
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


# ---- clipped zoom -----------------------------------------------------------------------------

@lru_cache(maxsize=128)
def _linear_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # scipy.ndimage.zoom(order=1, grid_mode=False): output o samples input o * (n_in-1)/(n_out-1).
    scale = (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
    coord = np.arange(n_out) * scale
    i0 = np.clip(np.floor(coord).astype(np.intp), 0, max(n_in - 2, 0))
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, coord - i0


def zoom_crop(img: np.ndarray, zoom_factor: float) -> tuple[np.ndarray, int, int]:
    """clipped_zoom's centre crop of ceil(side / z) and the size scipy zooms it to."""
    h, w = img.shape
    ch0, ch1 = int(np.ceil(h / float(zoom_factor))), int(np.ceil(w / float(zoom_factor)))
    top0, top1 = (h - ch0) // 2, (w - ch1) // 2
    return (img[top0:top0 + ch0, top1:top1 + ch1],
            int(round(ch0 * zoom_factor)), int(round(ch1 * zoom_factor)))


def clipped_zoom(img: np.ndarray, zoom_factor: float) -> np.ndarray:
    """The library's ``clipped_zoom`` of a 2-D image (the centre crop zoomed by z with linear
    interpolation; the output is not cropped back)."""
    crop, n0, n1 = zoom_crop(img, zoom_factor)
    r0, r1, tr = _linear_taps(crop.shape[0], n0)
    c0, c1, tc = _linear_taps(crop.shape[1], n1)
    rows = crop[r0] * (1 - tr)[:, None] + crop[r1] * tr[:, None]
    return rows[:, c0] * (1 - tc) + rows[:, c1] * tc


# ---- defocus disk -----------------------------------------------------------------------------

def disk(radius: int, alias_blur: float = 0.1) -> np.ndarray:
    """The library's anti-aliased float32 disk kernel (sums to ~1) for defocus blur."""
    if radius <= 8:
        L, ksize = np.arange(-8, 8 + 1), (3, 3)
    else:
        L, ksize = np.arange(-radius, radius + 1), (5, 5)
    X, Y = np.meshgrid(L, L)
    aliased = np.array((X ** 2 + Y ** 2) <= radius ** 2, dtype=np.float32)
    aliased /= np.sum(aliased)
    return cv2.GaussianBlur(aliased, ksize=ksize, sigmaX=alias_blur)


# ---- bilinear remap ---------------------------------------------------------------------------

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


# ---- Pillow's BOX and NEAREST resizing (pixelate) -----------------------------------------------

#: Pillow's fixed-point precision for 8-bit resampling weights (``PRECISION_BITS``).
_PRECISION_BITS = 32 - 8 - 2


@lru_cache(maxsize=32)
def _box_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Pillow's BOX filter taps (``precompute_coeffs`` + ``normalize_coeffs_8bpc``): for each output
    pixel, the source indices (n_out, K) and their fixed-point weights (unused taps: weight 0)."""
    scale = n_in / n_out
    filterscale = max(scale, 1.0)
    support = 0.5 * filterscale  # BOX's support is 0.5
    ksize = math.ceil(support) * 2 + 1
    idx = np.zeros((n_out, ksize), np.intp)
    weight = np.zeros((n_out, ksize), np.int64)
    for xx in range(n_out):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), n_in) - xmin
        # box(t) = 1 for -0.5 < t <= 0.5, then normalised by the sum
        k = [1.0 if -0.5 < (x + xmin - center + 0.5) / filterscale <= 0.5 else 0.0
             for x in range(xmax)]
        total = sum(k)
        for x, v in enumerate(k):
            v = v / total if total else v
            idx[xx, x] = xmin + x
            weight[xx, x] = int(0.5 + v * (1 << _PRECISION_BITS))  # weights are >= 0
    return idx, weight


def _fixed_point(acc: np.ndarray) -> np.ndarray:
    # Pillow starts each sum at one half and clips the shifted result to 0..255
    return np.clip((acc + (1 << (_PRECISION_BITS - 1))) >> _PRECISION_BITS, 0, 255)


def box_resize(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """``PIL.Image.resize((width, height), Image.BOX)`` of a uint8 2-D image.

    A horizontal then a vertical pass, each rounded to 8 bits as Pillow does. (Pillow 13 runs the
    vertical pass first when the height shrinks much more than the width, python-pillow/Pillow#9549,
    so the library's pixelate depends on the Pillow version there; for the square faces here it
    does not.)"""
    ci, cw = _box_taps(img.shape[1], width)
    rows = _fixed_point((img[:, ci].astype(np.int64) * cw).sum(-1))
    ri, rw = _box_taps(img.shape[0], height)
    return _fixed_point((rows[ri] * rw[:, :, None]).sum(1)).astype(np.uint8)


def _nearest_taps(n_in: int, n_out: int) -> np.ndarray:
    # Pillow's ImagingScaleAffine: the source coordinate starts at half a step and grows by one
    # step per output pixel, accumulated in float64 (which decides the ties), then truncated.
    steps = np.full(n_out, n_in / n_out)
    steps[0] *= 0.5
    return np.add.accumulate(steps).astype(np.intp)


def nearest_resize(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """``PIL.Image.resize((width, height), Image.NEAREST)`` of a 2-D image: output pixel o takes
    source pixel (o + 0.5) * n_in / n_out, rounded down as Pillow computes it."""
    return img[_nearest_taps(img.shape[0], height)][:, _nearest_taps(img.shape[1], width)]
