"""Weather corruptions: snow, frost and fog.

Snow and fog are the library's gray branches (the per-channel computation of its 3-channel
path for a gray face); frost blends a colour texture, so its blend stays per channel. The frost
textures ship with this package (``frost/``, Apache-2.0: see ``frost/NOTICE.md``).
"""
from __future__ import annotations

import importlib.resources
from functools import cache

import cv2
import numpy as np

from uar_stream.errors import UarError
from uar_stream.evaluation.corruptions.ops import clipped_zoom, motion_blur_2d


def snow(x: np.ndarray, severity: int, seed: int) -> np.ndarray:
    """The library's 2-D snow branch (it blends with x itself where the 3-channel one uses
    float32 gray(x), an ulp away: within one gray level)."""
    c = [(0.1, 0.3, 3, 0.5, 10, 4, 0.8), (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
         (0.55, 0.3, 4, 0.9, 12, 8, 0.7), (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
         (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55)][severity - 1]
    x = np.array(x, dtype=np.float32) / 255.
    layer = np.random.normal(size=x.shape[:2], loc=c[0], scale=c[1])
    layer = clipped_zoom(layer, c[2])
    layer[layer < c[3]] = 0
    layer = np.clip(layer, 0, 1)
    layer = motion_blur_2d(layer, radius=c[4], sigma=c[5], angle=np.random.uniform(-135, -45))
    layer = np.round(layer * 255).astype(np.uint8) / 255.
    layer = layer[:x.shape[0], :x.shape[1]]
    x = c[6] * x + (1 - c[6]) * np.maximum(x, x * 1.5 + 0.5)
    return np.clip(x + layer + np.rot90(layer, k=2), 0, 1) * 255


FROST_FILES = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg", "frost6.jpg")


def frost_path(idx: int):
    """The packaged frost texture ``idx`` (a ``Traversable``)."""
    return importlib.resources.files(__package__) / "frost" / FROST_FILES[idx]


@cache
def _frost_texture(idx: int, h: int, w: int) -> np.ndarray:
    """Frost texture ``idx`` (BGR), rescaled for an (h, w) image as the library does; read once
    per process (the library re-read and re-resized it on every call)."""
    ref = frost_path(idx)
    with importlib.resources.as_file(ref) as path:
        tex = cv2.imread(str(path))
    if tex is None:
        raise UarError(f"frost texture missing or unreadable: {ref} (reinstall uar-stream)")
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
    """A random crop of a random texture blended in; the blend is per colour channel (the
    texture is not gray), then converted to gray like the library's output."""
    c = [(1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75)][severity - 1]
    h, w = x.shape
    tex = _frost_texture(np.random.randint(6), h, w)
    top, left = np.random.randint(0, tex.shape[0] - h), np.random.randint(0, tex.shape[1] - w)
    crop = tex[top:top + h, left:left + w][..., [2, 1, 0]]
    rgb = np.uint8(np.clip(c[0] * x[..., None] + c[1] * crop, 0, 255))
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def _next_power_of_2(n: int) -> int:
    return 1 if n == 0 else 2 ** (n - 1).bit_length()


def plasma_fractal(mapsize: int = 256, wibbledecay: float = 3) -> np.ndarray:
    """The library's diamond-square height map (float32, mapsize x mapsize, in [0, 1]; mapsize a
    power of two), with the same draws from numpy's global generator."""
    if mapsize & (mapsize - 1):
        raise ValueError(f"plasma_fractal: mapsize {mapsize} is not a power of two")
    maparray = np.empty((mapsize, mapsize), dtype=np.float32)
    maparray[0, 0] = 0
    stepsize = mapsize
    wibble = 100

    def wibbledmean(array):
        return array / 4 + wibble * np.random.uniform(-wibble, wibble, array.shape)

    def fillsquares():
        # each square's centre: the mean of its corners plus a wibble
        cornerref = maparray[0:mapsize:stepsize, 0:mapsize:stepsize]
        squareaccum = cornerref + np.roll(cornerref, shift=-1, axis=0)
        squareaccum += np.roll(squareaccum, shift=-1, axis=1)
        maparray[stepsize // 2:mapsize:stepsize, stepsize // 2:mapsize:stepsize] = wibbledmean(squareaccum)

    def filldiamonds():
        # each diamond's centre: the mean of its four points plus a wibble
        drgrid = maparray[stepsize // 2:mapsize:stepsize, stepsize // 2:mapsize:stepsize]
        ulgrid = maparray[0:mapsize:stepsize, 0:mapsize:stepsize]
        ltsum = (drgrid + np.roll(drgrid, 1, axis=0)) + (ulgrid + np.roll(ulgrid, -1, axis=1))
        maparray[0:mapsize:stepsize, stepsize // 2:mapsize:stepsize] = wibbledmean(ltsum)
        ttsum = (drgrid + np.roll(drgrid, 1, axis=1)) + (ulgrid + np.roll(ulgrid, -1, axis=0))
        maparray[stepsize // 2:mapsize:stepsize, 0:mapsize:stepsize] = wibbledmean(ttsum)

    while stepsize >= 2:
        fillsquares()
        filldiamonds()
        stepsize //= 2
        wibble /= wibbledecay

    maparray -= maparray.min()
    return maparray / maparray.max()


def fog(x: np.ndarray, severity: int, seed: int) -> np.ndarray:
    """A plasma-fractal haze added, then the range renormalised (the library's fog)."""
    c = [(1.5, 2), (2., 2), (2.5, 1.7), (2.5, 1.5), (3., 1.4)][severity - 1]
    h, w = x.shape
    x = np.array(x) / 255.
    max_val = x.max()
    x += c[0] * plasma_fractal(mapsize=_next_power_of_2(int(max(h, w))), wibbledecay=c[1])[:h, :w]
    return np.clip(x * max_val / (max_val + c[0]), 0, 1) * 255
