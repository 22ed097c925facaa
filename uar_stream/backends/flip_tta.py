"""Horizontal-flip test-time augmentation around any engine (``engine.flip_tta``).

Each face runs twice, as given and mirrored, in ONE inner call (batch 2B, split by the inner
engine's ``max_batch`` as usual). Member m's probabilities are the mean of its two views' (at
the decomposition temperature), and total / aleatoric / epistemic are recomputed from those
(:func:`uar_stream.model.uncertainty.decompose`), so a member that reads the mirror differently
counts as uncertain about the face rather than as a second member. ``mean_probs`` (calibrated
temperature) and the density score are the two views' means.

Off by default: the shipped members were trained on flipped faces, and on PublicTest the
averaged views change accuracy by less than the members' spread at twice the engine time
(``tools/bench_flip_tta.py``, docs/engines.md#flip-test-time-augmentation).
"""
from __future__ import annotations

import numpy as np

from uar_stream.backends.base import Engine
from uar_stream.flow import EnsembleOutput
from uar_stream.model.uncertainty import decompose


class FlipTTAEngine:
    """An :class:`Engine` that averages each face with its mirror image; everything else
    (``max_batch``, ``input_size``, ``precision``, ...) is the inner engine's."""

    def __init__(self, inner: Engine):
        self.inner = inner
        self.name = f"{inner.name}+flip"
        self.members = inner.members
        self.num_classes = inner.num_classes

    def __getattr__(self, attr: str):
        # Only reached for attributes not set above: the inner engine's (max_batch, ...).
        if attr == "inner":  # not yet set (copy/pickle): no recursion
            raise AttributeError(attr)
        return getattr(self.inner, attr)

    def infer(self, batch: np.ndarray) -> EnsembleOutput:
        """batch float32 (B, 1, S, S) -> EnsembleOutput with B rows, each the mean of a face and
        its mirror."""
        batch = np.asarray(batch)
        if batch.ndim != 4:  # the inner engine names the expected shape
            return self.inner.infer(batch)
        b = len(batch)
        if b == 0:
            return self.inner.infer(batch)
        both = self.inner.infer(np.concatenate([batch, batch[..., ::-1]]))
        member = (both.member_probs[:b].astype(np.float64) + both.member_probs[b:]) / 2
        out = decompose(member)
        density = None if both.density is None else (both.density[:b] + both.density[b:]) / 2
        f32 = np.float32
        return EnsembleOutput(((both.mean_probs[:b] + both.mean_probs[b:]) / 2).astype(f32),
                              out.total.astype(f32), out.aleatoric.astype(f32),
                              out.epistemic.astype(f32), member.astype(f32),
                              None if density is None else density.astype(f32))
