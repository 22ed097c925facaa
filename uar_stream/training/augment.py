"""Batched face augmentation in torch: flips, small affine, brightness/contrast, and the
live-footage transforms (:func:`live_augment`: pose, detector jitter, low resolution, motion
blur, lighting, sensor noise, occlusion, stream compression).

Nothing here changes what expression a face shows: no vertical flips, no large rotations,
no crops that can cut the mouth or the eyes off.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of :func:`augment`'s affine (rotation, scale, shift) and photometric transforms,
    and the probability of erasing a patch."""
    max_rotate_deg: float = 10.0
    scale: tuple[float, float] = (0.9, 1.1)
    max_shift: float = 0.08  # fraction of the crop side
    brightness: float = 0.2  # in normalised units (about 0.05 of the pixel range)
    contrast: tuple[float, float] = (0.75, 1.25)
    erase_p: float = 0.25  # random erasing of a small patch (occlusion robustness)


def augment(x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    """x: normalised faces (B, 1, S, S) -> augmented (B, 1, S, S)."""
    b, _, s, _ = x.shape

    def u(lo: float, hi: float, shape=(b,)) -> torch.Tensor:
        return torch.rand(shape, generator=gen) * (hi - lo) + lo

    ang = u(-cfg.max_rotate_deg, cfg.max_rotate_deg) * (math.pi / 180)
    sc = u(*cfg.scale)
    flip = torch.where(torch.rand(b, generator=gen) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(ang) / sc, torch.sin(ang) / sc
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = cos * flip
    theta[:, 0, 1] = -sin
    theta[:, 1, 0] = sin * flip
    theta[:, 1, 1] = cos
    theta[:, :, 2] = u(-cfg.max_shift, cfg.max_shift, (b, 2)) * 2
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    mean = x.mean(dim=(2, 3), keepdim=True)
    x = (x - mean) * u(*cfg.contrast).view(b, 1, 1, 1) + mean
    x = x + u(-cfg.brightness, cfg.brightness).view(b, 1, 1, 1)
    if cfg.erase_p > 0:
        # Erase a patch of 1/8-1/4 of the side in a random place, on some faces.
        side = (u(0.125, 0.25) * s).long()
        cx, cy = (u(0, 1) * s).long(), (u(0, 1) * s).long()
        ar = torch.arange(s)
        mx = ((ar[None] - cx[:, None]).abs() <= side[:, None] // 2)
        my = ((ar[None] - cy[:, None]).abs() <= side[:, None] // 2)
        m = (my[:, :, None] & mx[:, None, :]) & (torch.rand(b, generator=gen) < cfg.erase_p)[:, None, None]
        x = torch.where(m[:, None], torch.zeros_like(x), x)
    return x


# --- Live-footage augmentation -------------------------------------------------------------
#
# FER+ faces are studio-like web photos, frontal and sharp; live crops come from a detector on
# a compressed, often dim video stream, with the head turned or tilted. Each transform below
# mimics one of those differences with its own parameterisation. None of them reuses the
# ImageNet-C definitions (the corruptions we test robustness on): blur is a line kernel, not
# Wand's motion blur; noise is signal-dependent (Poisson-Gaussian) after a low-light gain, not
# fixed-sigma Gaussian or shot noise; compression is an 8x8 DCT quantisation on a shifted block
# grid, not PIL JPEG; low resolution is area down + bilinear up at sizes ImageNet-C's pixelate
# does not use.

_JPEG_LUMA = torch.tensor([
    [16, 11, 10, 16, 24, 40, 51, 61], [12, 12, 14, 19, 26, 58, 60, 55],
    [14, 13, 16, 24, 40, 57, 69, 56], [14, 17, 22, 29, 51, 87, 80, 62],
    [18, 22, 37, 56, 68, 109, 103, 77], [24, 35, 55, 64, 81, 104, 113, 92],
    [49, 64, 78, 87, 103, 121, 120, 101], [72, 92, 95, 98, 112, 100, 103, 99]], dtype=torch.float32)


def _dct_matrix(n: int = 8) -> torch.Tensor:
    k = torch.arange(n, dtype=torch.float32)
    d = torch.cos(math.pi * (2 * k[None] + 1) * k[:, None] / (2 * n)) * math.sqrt(2 / n)
    d[0] /= math.sqrt(2)
    return d


_DCT8 = _dct_matrix()


@dataclass(frozen=True)
class LiveConfig:
    """Probabilities (``*_p``) and ranges of the live-footage transforms; ``strength`` scales
    every probability (capped at 1) and every magnitude, so one number sets a member's
    augmentation level (0: off)."""
    strength: float = 1.0
    # Out-of-plane pose: perspective foreshortening, in normalised units (1 = half the side).
    yaw_p: float = 0.4
    max_yaw: float = 0.25
    pitch_p: float = 0.4
    max_pitch: float = 0.2  # also squashes the face vertically by up to max_pitch / 2
    # Alignment jitter as the live detector produces it: anisotropic scale (keypoint noise).
    aspect_p: float = 0.5
    max_aspect: float = 0.08
    # Low resolution: area-downsample to a side in [min, max] px, bilinear back to 48.
    lowres_p: float = 0.15
    lowres_side: tuple[int, int] = (20, 34)
    # Motion blur: a line kernel of length [min, max] px at a random angle.
    blur_p: float = 0.12
    blur_len: tuple[float, float] = (2.0, 5.0)
    # Lighting: gamma, low light with sensor noise then camera gain, uneven (gradient) light.
    gamma_p: float = 0.3
    gamma: tuple[float, float] = (0.6, 1.6)
    lowlight_p: float = 0.2
    lowlight: tuple[float, float] = (0.3, 0.7)  # scene brightness factor before the gain
    noise: tuple[float, float] = (0.0005, 0.006)  # Poisson-like variance per unit of signal
    uneven_p: float = 0.3
    uneven: float = 0.5  # max relative brightness change across the face
    # Partial occlusion: a rectangle of flat or textured gray (hand, hair, glasses bar).
    occlude_p: float = 0.2
    occlude_side: tuple[float, float] = (0.15, 0.35)  # fraction of the side, per axis
    # Stream compression: DCT quantisation at a JPEG-like quality.
    jpeg_p: float = 0.3
    jpeg_quality: tuple[float, float] = (25.0, 75.0)

    def validate(self, key: str = "train.live") -> None:
        """Raise a ConfigError naming ``key``'s field if a probability or range is invalid."""
        from uar_stream.errors import ConfigError

        if self.strength < 0:
            raise ConfigError(f"{key}.strength: must be >= 0, got {self.strength}")
        for name, v in vars(self).items():
            if name.endswith("_p") and not 0 <= v <= 1:
                raise ConfigError(f"{key}.{name}: must be in [0, 1], got {v}")
            if isinstance(v, tuple) and not (len(v) == 2 and v[0] <= v[1]):
                raise ConfigError(f"{key}.{name}: must be a (low, high) pair with low <= high, got {v}")
        if not 4 <= self.lowres_side[0] <= self.lowres_side[1] <= 47:
            raise ConfigError(f"{key}.lowres_side: must lie in [4, 47], got {self.lowres_side}")
        if not 1 <= self.jpeg_quality[0] <= self.jpeg_quality[1] <= 100:
            raise ConfigError(f"{key}.jpeg_quality: must lie in [1, 100], got {self.jpeg_quality}")
        if not 0 < self.gamma[0] or not 0 < self.lowlight[0] <= self.lowlight[1] <= 1:
            raise ConfigError(f"{key}.gamma/lowlight: gamma must be > 0, lowlight in (0, 1]")


def live_augment(x: torch.Tensor, cfg: LiveConfig, gen: torch.Generator,
                 pixel_mean: float, pixel_std: float) -> torch.Tensor:
    """x: normalised faces (B, 1, S, S) -> faces as a live stream would show them (same shape).

    Runs after :func:`augment` (which did the in-plane geometry and flip). Order follows the
    camera: scene (occlusion, light) -> pose -> optics/motion -> sensor -> codec -> crop size.
    Each transform but the pose draws which faces it touches, then, if any, its parameters
    (the pose always draws both); the helpers keep that order of draws from ``gen``.
    """
    k = cfg.strength
    if k <= 0:
        return x
    b = x.shape[0]

    def u(lo: float, hi: float, shape=(b,)) -> torch.Tensor:
        return torch.rand(shape, generator=gen) * (hi - lo) + lo

    def pick(p: float) -> torch.Tensor:
        return torch.rand(b, generator=gen) < min(1.0, p * k)

    px = (x * pixel_std + pixel_mean).clamp(0, 1)  # pixel units in [0, 1]
    if (sel := pick(cfg.occlude_p)).any():
        px = _occlude(px, sel, cfg, k, u, gen)
    if (sel := pick(cfg.uneven_p)).any():
        px = _uneven_light(px, sel, cfg, k, u)
    if (sel := pick(cfg.gamma_p)).any():
        px = _gamma(px, sel, cfg, k, u)
    px = _pose(px, cfg, k, u, pick)
    if (sel := pick(cfg.blur_p)).any():
        px = torch.where(sel.view(b, 1, 1, 1), _motion_blur(px, cfg, k, u), px)
    if (sel := pick(cfg.lowlight_p)).any():
        px = _low_light(px, sel, cfg, k, u, gen)
    px = px.clamp(0, 1)
    if (sel := pick(cfg.jpeg_p)).any():
        px = torch.where(sel.view(b, 1, 1, 1), _dct_compress(px, cfg, k, u, gen), px)
    if (sel := pick(cfg.lowres_p)).any():
        px = _low_resolution(px, sel, cfg, k, u)
    return (px.clamp(0, 1) - pixel_mean) / pixel_std


def _occlude(px: torch.Tensor, sel: torch.Tensor, cfg: LiveConfig, k: float, u,
             gen: torch.Generator) -> torch.Tensor:
    """A rectangle of flat gray or noisy texture, anywhere (a hand or hair can cover any part),
    on the faces in ``sel``."""
    b, _, s, _ = px.shape
    lo, hi = cfg.occlude_side
    w, h = (u(lo, min(hi * k, 0.6)) * s), (u(lo, min(hi * k, 0.6)) * s)
    cx, cy = u(0, 1) * s, u(0, 1) * s
    ar = torch.arange(s, dtype=torch.float32) + 0.5
    mx = (ar[None] - cx[:, None]).abs() <= w[:, None] / 2
    my = (ar[None] - cy[:, None]).abs() <= h[:, None] / 2
    m = (my[:, :, None] & mx[:, None, :] & sel[:, None, None])[:, None]
    fill = u(0, 1).view(b, 1, 1, 1) + torch.randn(px.shape, generator=gen) * u(0, 0.15).view(b, 1, 1, 1)
    return torch.where(m, fill.clamp(0, 1), px)


def _uneven_light(px: torch.Tensor, sel: torch.Tensor, cfg: LiveConfig, k: float, u) -> torch.Tensor:
    """A linear brightness gradient at a random angle across the faces in ``sel``."""
    b, _, s, _ = px.shape
    ang = u(0, 2 * math.pi)
    g = torch.linspace(-1, 1, s)
    ramp = (torch.cos(ang).view(b, 1, 1) * g[None, None, :]
            + torch.sin(ang).view(b, 1, 1) * g[None, :, None])
    amp = u(0, cfg.uneven * k).clamp(max=0.9) * sel
    return px * (1 + amp.view(b, 1, 1, 1) * ramp[:, None] / 2)


def _gamma(px: torch.Tensor, sel: torch.Tensor, cfg: LiveConfig, k: float, u) -> torch.Tensor:
    """A random gamma on the faces in ``sel`` (the others keep gamma 1)."""
    b = px.shape[0]
    lo, hi = cfg.gamma
    gam = torch.exp(u(math.log(lo), math.log(hi)) * min(k, 1.5))
    gam = torch.where(sel, gam, torch.ones_like(gam))
    return px.clamp(1e-4, 1) ** gam.view(b, 1, 1, 1)


def _pose(px: torch.Tensor, cfg: LiveConfig, k: float, u, pick) -> torch.Tensor:
    """Pose and detector jitter (yaw, pitch, aspect): one homography per face, one resampling;
    draws each amount, then which faces get it, whether or not any face does."""
    b, _, s, _ = px.shape
    yaw = u(-cfg.max_yaw, cfg.max_yaw) * k * pick(cfg.yaw_p)
    pitch = u(-cfg.max_pitch, cfg.max_pitch) * k * pick(cfg.pitch_p)
    aspect = 1 + u(-cfg.max_aspect, cfg.max_aspect) * k * pick(cfg.aspect_p)
    if not ((yaw != 0).any() or (pitch != 0).any() or (aspect != 1).any()):
        return px
    hmat = torch.zeros(b, 3, 3)
    hmat[:, 0, 0] = aspect
    hmat[:, 1, 1] = (1 + pitch.abs() / 2) / aspect  # >1 in sampling space: the face squashes
    hmat[:, 2, 2] = 1
    hmat[:, 2, 0] = yaw
    hmat[:, 2, 1] = pitch
    lin = (torch.arange(s, dtype=torch.float32) + 0.5) / s * 2 - 1
    gy, gx = torch.meshgrid(lin, lin, indexing="ij")
    base = torch.stack([gx, gy, torch.ones_like(gx)], -1).view(1, s * s, 3)
    q = base @ hmat.transpose(1, 2)
    grid = (q[..., :2] / q[..., 2:].clamp_min(0.2)).view(b, s, s, 2)
    return F.grid_sample(px, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _low_light(px: torch.Tensor, sel: torch.Tensor, cfg: LiveConfig, k: float, u,
               gen: torch.Generator) -> torch.Tensor:
    """A darker scene, signal-dependent sensor noise, 8-bit quantisation, then a camera gain
    that recovers part of the brightness, on the faces in ``sel``."""
    b = px.shape[0]
    lo, hi = cfg.lowlight
    lvl = u(lo, hi) ** min(k, 1.5)
    var = u(*cfg.noise) * k
    dark = px * lvl.view(b, 1, 1, 1)
    noisy = dark + torch.randn(px.shape, generator=gen) * torch.sqrt(var.view(b, 1, 1, 1) * dark + 1e-5)
    gain = (1 / lvl) * u(0.6, 1.0)  # auto-exposure recovers part of the brightness
    noisy = (noisy.clamp(0, 1) * 255).round() / 255 * gain.view(b, 1, 1, 1)  # 8-bit sensor
    return torch.where(sel.view(b, 1, 1, 1), noisy, px)


def _low_resolution(px: torch.Tensor, sel: torch.Tensor, cfg: LiveConfig, k: float, u) -> torch.Tensor:
    """Area-downsample the faces in ``sel`` to a random small side and resize them back."""
    s = px.shape[-1]
    lo, hi = cfg.lowres_side
    side = (u(max(lo, hi - (hi - lo) * k), hi + 1)).long().clamp(4, s - 1)
    # A few discrete sizes keep this to a handful of batched resizes.
    side = (side // 4) * 4 + 2
    out = px.clone()
    for r in torch.unique(side[sel]).tolist():
        idx = torch.nonzero(sel & (side == r)).flatten()
        small = F.interpolate(px[idx], size=(r, r), mode="area")
        out[idx] = F.interpolate(small, size=(s, s), mode="bilinear", align_corners=False)
    return out


def _motion_blur(px: torch.Tensor, cfg: LiveConfig, k: float, u) -> torch.Tensor:
    """Per-face line kernel (7x7) at a random angle, applied as one grouped convolution."""
    b, _, s, _ = px.shape
    ln = u(cfg.blur_len[0], cfg.blur_len[1] * min(k, 1.2)).clamp(1.0, 7.0)
    ang = u(0, math.pi)
    r = torch.arange(7, dtype=torch.float32) - 3
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    c, sn = torch.cos(ang).view(b, 1, 1), torch.sin(ang).view(b, 1, 1)
    along = xx[None] * c + yy[None] * sn
    across = -xx[None] * sn + yy[None] * c
    ker = (1 - across.abs()).clamp(min=0) * (along.abs() <= ln.view(b, 1, 1) / 2)
    ker = ker / ker.sum(dim=(1, 2), keepdim=True).clamp_min(1e-6)
    y = F.conv2d(F.pad(px.view(1, b, s, s), (3, 3, 3, 3), mode="replicate"), ker[:, None], groups=b)
    return y.view(b, 1, s, s)


def _dct_compress(px: torch.Tensor, cfg: LiveConfig, k: float, u, gen) -> torch.Tensor:
    """8x8 block DCT, quantised with the JPEG luminance table at a per-face quality, on a
    block grid shifted by a random offset (the crop is never aligned with the stream's grid)."""
    b, _, s, _ = px.shape
    q_lo, q_hi = cfg.jpeg_quality
    qual = u(max(1.0, q_hi - (q_hi - q_lo) * k), q_hi)
    scale = torch.where(qual < 50, 50 / qual, 2 - qual / 50)  # the IJG quality mapping
    table = (_JPEG_LUMA[None] * scale.view(b, 1, 1)).clamp(min=1)  # (B, 8, 8)
    off = int(torch.randint(0, 8, (1,), generator=gen))
    pad = F.pad(px, (off, 8 - off, off, 8 - off), mode="replicate") * 255 - 128  # (B,1,S+8,S+8)
    n = (s + 8) // 8
    blk = pad.view(b, n, 8, n, 8).permute(0, 1, 3, 2, 4)  # (B, n, n, 8, 8)
    coef = _DCT8 @ blk @ _DCT8.T
    t = table[:, None, None]
    coef = torch.round(coef / t) * t
    rec = (_DCT8.T @ coef @ _DCT8).permute(0, 1, 3, 2, 4).reshape(b, 1, s + 8, s + 8)
    return ((rec + 128) / 255)[:, :, off:off + s, off:off + s].clamp(0, 1)
