"""Batched face augmentation in torch: flips, small affine, brightness/contrast.

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
