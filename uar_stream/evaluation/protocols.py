"""Corruption protocols: on which grid each corruption runs, and which faces are its negatives.

``paper`` (the published protocol, kept): every type at 224x224 and area-downscaled back to
48x48, against the clean faces.

``native`` (protocol v2): the pixel-level types (:data:`NATIVE_GRID`: noise, impulse, speckle,
JPEG, pixelate) run on the model's own 48x48 grid, because at 224 the area downscaling
averages ~22 pixels into one and washes their shift out (pixelate at 224 scored no higher
than the resampling round trip alone). Their negatives are the clean faces (nothing was
resampled). Blur, weather and geometric types stay at 224 and down, which keeps their scale
relative to the face; their negatives are the resampled clean faces, because the round trip
itself changes a face. The clean-face figure of those is kept as a control.
"""
from __future__ import annotations

from uar_stream.evaluation.corruptions import CORRUPTIONS, VALIDATION

PROTOCOLS = ("paper", "native")
#: Types that run on the model's own grid under ``native``.
NATIVE_GRID = frozenset({"gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise",
                         "jpeg_compression", "pixelate"})
#: Suffix of a set name built on the native grid (cache files, prediction names).
NATIVE_SUFFIX = "@48"
#: Validation types left out of the validation mean: saturate is no shift of a gray face
#: (corruptions/validation.py).
VALIDATION_EXCLUDED = frozenset({"saturate"})
VALIDATION_MEAN = tuple(c for c in VALIDATION if c not in VALIDATION_EXCLUDED)
TEST = CORRUPTIONS


def on_native_grid(corruption: str, protocol: str) -> bool:
    """Whether ``corruption`` runs on the 48x48 grid under ``protocol``."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol {protocol!r}; allowed: {', '.join(PROTOCOLS)}")
    return protocol == "native" and corruption in NATIVE_GRID


def set_name(corruption: str, protocol: str) -> str:
    """The set name of ``corruption`` under ``protocol`` (the 224 sets are shared by both)."""
    return corruption + (NATIVE_SUFFIX if on_native_grid(corruption, protocol) else "")


def parse_set_name(name: str) -> tuple[str, bool]:
    """Set name -> (corruption, built on the native grid)."""
    if name.endswith(NATIVE_SUFFIX):
        return name[:-len(NATIVE_SUFFIX)], True
    return name, False


def negatives(corruption: str, protocol: str) -> str:
    """'clean' or 'resampled': the in-distribution faces ``corruption``'s AUROC is taken against."""
    if protocol == "paper" or on_native_grid(corruption, protocol):
        return "clean"
    return "resampled"


def set_names(corruptions: tuple[str, ...], protocols: tuple[str, ...] = PROTOCOLS) -> list[str]:
    """Every distinct set name the protocols need for these corruptions, in a stable order."""
    out: list[str] = []
    for p in protocols:
        for c in corruptions:
            n = set_name(c, p)
            if n not in out:
                out.append(n)
    return out
