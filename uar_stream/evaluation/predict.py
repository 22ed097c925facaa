"""Run a model on face arrays through the real inference path, with an on-disk cache."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from uar_stream.backends import create_engine
from uar_stream.evaluation.sets import save_atomic, set_stem
from uar_stream.model.preprocess import prepare_batch
from uar_stream.model.store import model_id, read_manifest

_FIELDS = ("mean_probs", "total", "aleatoric", "epistemic")
#: Stored too when the engine gives them: the density score, and the members' probabilities
#: (at the decomposition temperature) so other temperatures can be studied without rerunning.
_OPTIONAL = ("density", "member_probs")


@dataclass
class Scores:
    """Per-face ensemble outputs. mean_probs (N, C); total, aleatoric, epistemic (N,) in nats;
    density (N,) (None without a density file); member_probs (N, M, C) (None in caches of
    older versions); rows: for a set built from a sample of the faces, their indices among
    the clean faces (None: every face, in order). rows is not cached: the evaluation sets it."""

    mean_probs: np.ndarray
    total: np.ndarray
    aleatoric: np.ndarray
    epistemic: np.ndarray
    density: np.ndarray | None = None
    member_probs: np.ndarray | None = None
    rows: np.ndarray | None = None

    @property
    def max_softmax_score(self) -> np.ndarray:
        """1 - max class probability (N,): the max-softmax baseline's rejection score."""
        return 1.0 - self.mean_probs.max(1)

    def score(self, name: str) -> np.ndarray:
        """A per-face score by name: a field, or ``max_softmax``."""
        return self.max_softmax_score if name == "max_softmax" else getattr(self, name)


class Predictor:
    """A model directory behind ``create_engine(model_dir, "auto")``, with a cache of its
    outputs keyed by model id (:func:`uar_stream.model.store.model_id`) + set name;
    ``flip_tta``: each face averaged with its mirror (``engine.flip_tta``), cached apart.

    Batches of 32 keep the 5-member CNN's activations in cache: two single-threaded engines
    side by side spent 5-8% fewer CPU-seconds per face than at batch 256 in a short benchmark
    (in the full cold run the gain was within noise); the outputs are the same bit for bit."""

    def __init__(self, model_dir: str | Path, cache_dir: Path | None, batch: int = 32,
                 backend: str = "auto", threads: int = 0, flip_tta: bool = False):
        self.model_dir = Path(model_dir)
        self.backend, self.threads, self.flip_tta = backend, threads, flip_tta
        self.manifest = read_manifest(self.model_dir)
        self.model_id = model_id(self.model_dir)
        # flip TTA gives other outputs for the same model: its own cache folder
        key = self.model_id + ("-flip" if flip_tta else "")
        self.cache_dir = cache_dir / "predictions" / key if cache_dir else None
        self.batch = batch
        self._engine = None

    @property
    def engine(self):
        """The engine (built on first use)."""
        if self._engine is None:  # built lazily: a fully cached rerun never needs it
            device = "cpu" if self.backend != "auto" else "auto"
            self._engine = create_engine(self.model_dir, self.backend, device, max_batch=self.batch,
                                         threads=self.threads, flip_tta=self.flip_tta)
        return self._engine

    def _path(self, set_key: str, name: str) -> Path | None:
        return self.cache_dir / set_key / f"{name}.npz" if self.cache_dir else None

    def cached(self, set_key: str, name: str, n: int | None = None) -> Scores | None:
        """The cached Scores of this set, or None (missing, unreadable, older than the model's
        outputs, or not ``n`` faces when ``n`` is given)."""
        path = self._path(set_key, name)
        if path is None or not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as d:
                got = Scores(*(d[f] for f in _FIELDS), **{f: d[f] for f in _OPTIONAL if f in d.files})
        except (OSError, KeyError, ValueError):
            return None
        if self.manifest.density is not None and got.density is None:
            return None  # written before the model had its density output
        if n is not None and len(got.total) != n:
            return None
        return got

    def predict(self, images: np.ndarray, set_key: str | None = None, name: str | None = None) -> Scores:
        """uint8 (N, S, S) faces -> Scores; stored in the cache when a key and name are given."""
        parts = [self.engine.infer(prepare_batch(images[i:i + self.batch]))
                 for i in range(0, len(images), self.batch)]
        cat = {f: np.concatenate([getattr(p, f) for p in parts]).astype(np.float32)
               for f in _FIELDS + _OPTIONAL if all(getattr(p, f) is not None for p in parts)}
        s = Scores(**cat)
        path = self._path(set_key, name) if set_key and name else None
        if path is not None:
            save_atomic(path, **cat)
        return s


#: Engines that run on the CPU, by name -> the create_engine backend that builds them.
CPU_ENGINES = {"onnxruntime": "onnxruntime", "torch-cpu": "torch"}

_worker_predictors: dict[tuple, Predictor] = {}


@dataclass
class SetScorer:
    """Scores a corrupted set inside the worker process that built it (picklable: it carries
    paths, and each process builds its own single-threaded CPU engines once).

    One single-threaded engine per worker, instead of a multi-threaded engine in the parent
    competing with the workers for the same cores: nothing is oversubscribed, the corrupted
    faces never travel back, and a face costs the same CPU time as before (~6.1 ms on this
    machine's cores, at the fp32 GEMM rate)."""

    models: dict[str, str]  # model name -> model directory
    backends: dict[str, str]  # model name -> CPU_ENGINES value
    cache_dir: Path | None
    set_key: str
    todo: dict  # set id -> model names to score it with
    rows: dict = field(default_factory=dict)  # set id -> face indices, for sampled sets

    def _predictor(self, name: str) -> Predictor:
        k = (self.models[name], self.backends[name], str(self.cache_dir))
        if k not in _worker_predictors:
            _worker_predictors[k] = Predictor(self.models[name], self.cache_dir,
                                              backend=self.backends[name], threads=1)
        return _worker_predictors[k]

    def __call__(self, sid, images: np.ndarray) -> dict:
        """Score one built set with every model it still needs: {"scores": {model: Scores}, "cpu_s"}."""
        t = time.process_time()
        stem = set_stem(sid, self.rows.get(sid))
        scores = {m: self._predictor(m).predict(images, self.set_key, stem) for m in self.todo[sid]}
        return {"scores": scores, "cpu_s": time.process_time() - t}
