"""Run a model on face arrays through the real inference path, with an on-disk cache."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..engines import create_engine
from ..model_store import MANIFEST, read_manifest
from ..preprocess import prepare_batch
from .sets import save_atomic

_FIELDS = ("mean_probs", "total", "aleatoric", "epistemic")


@dataclass
class Scores:
    """Per-face ensemble outputs. mean_probs (N, C); total, aleatoric, epistemic (N,) in nats."""

    mean_probs: np.ndarray
    total: np.ndarray
    aleatoric: np.ndarray
    epistemic: np.ndarray

    @property
    def max_softmax_score(self) -> np.ndarray:
        """1 - max class probability (N,): the max-softmax baseline's rejection score."""
        return 1.0 - self.mean_probs.max(1)

    def score(self, name: str) -> np.ndarray:
        return self.max_softmax_score if name == "max_softmax" else getattr(self, name)


def model_fingerprint(model_dir: str | Path) -> str:
    """Hash of the manifest and every weights file it lists (keys the prediction cache)."""
    model_dir = Path(model_dir)
    man = read_manifest(model_dir)
    h = hashlib.sha256((model_dir / MANIFEST).read_bytes())
    for name in man.files:
        p = model_dir / name
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


class Predictor:
    """A model directory behind ``create_engine(model_dir, "auto")``, with a cache of its
    outputs keyed by model fingerprint + set name."""

    def __init__(self, model_dir: str | Path, cache_dir: Path | None, batch: int = 256):
        self.model_dir = Path(model_dir)
        self.manifest = read_manifest(self.model_dir)
        self.fingerprint = model_fingerprint(self.model_dir)
        self.cache_dir = cache_dir / "predictions" / self.fingerprint[:16] if cache_dir else None
        self.batch = batch
        self._engine = None

    @property
    def engine(self):
        if self._engine is None:  # built lazily: a fully cached rerun never needs it
            self._engine = create_engine(self.model_dir, "auto", max_batch=self.batch)
        return self._engine

    def _path(self, set_key: str, name: str) -> Path | None:
        return self.cache_dir / set_key / f"{name}.npz" if self.cache_dir else None

    def cached(self, set_key: str, name: str) -> Scores | None:
        path = self._path(set_key, name)
        if path is None or not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as d:
                return Scores(*(d[f] for f in _FIELDS))
        except (OSError, KeyError, ValueError):
            return None

    def predict(self, images: np.ndarray, set_key: str | None = None, name: str | None = None) -> Scores:
        """uint8 (N, S, S) faces -> Scores; stored in the cache when a key and name are given."""
        parts = [self.engine.infer(prepare_batch(images[i:i + self.batch]))
                 for i in range(0, len(images), self.batch)]
        s = Scores(*(np.concatenate([getattr(p, f) for p in parts]).astype(np.float32)
                     for f in _FIELDS))
        path = self._path(set_key, name) if set_key and name else None
        if path is not None:
            save_atomic(path, **{f: getattr(s, f) for f in _FIELDS})
        return s
