"""Loading any model directory, whatever its backbone, into one module.

Above both :mod:`uar_stream.model.store` (weights, CNN) and the backbones, so neither
imports the other's dispatcher.
"""
from __future__ import annotations

from pathlib import Path

import torch

from uar_stream.errors import ModelError
from uar_stream.model.store import MANIFEST, Manifest, load_fused, read_manifest


def load_ensemble(model_dir: str | Path, verify_hashes: bool = True) -> tuple[torch.nn.Module, Manifest]:
    """Load any model directory into one module: forward(x (B, 1, H, W)) -> logits (B, M, C),
    eval mode, temperature not applied. Dispatches on ``manifest.backbone``: ``cnn`` -> the
    fused grouped-conv CNN (:func:`load_fused`), ``dinov2`` -> M DINOv2 ViTs (needs the
    ``dinov2`` extra)."""
    model_dir = Path(model_dir)
    man = read_manifest(model_dir)
    if man.backbone == "cnn":
        return load_fused(model_dir, verify_hashes)
    if man.backbone == "dinov2":
        # Lazy: the dinov2 extra (transformers) is optional.
        from uar_stream.model.backbones.dinov2 import load_dinov2_ensemble

        return load_dinov2_ensemble(model_dir, man, verify_hashes), man
    raise ModelError(f"{model_dir / MANIFEST}: backbone {man.backbone!r} is not known; allowed: cnn, dinov2")
