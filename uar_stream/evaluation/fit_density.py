"""``uar-stream fit-density``: fit a model directory's feature-density score on training faces.

The faces are the training split the members were trained on, filtered as training filters it
(``training_faces``: unknown/NF majorities and PublicTest duplicates dropped) minus the
temperature hold-out (``calibration_split`` with the manifest's own fraction and seed), so
nothing is fitted on the evaluation split. Any backbone that ``load_ensemble`` knows works
(the CNN's pooled last stage; DINOv2's head input).

Writes ``density.safetensors`` into the model directory and records it in the manifest with
its sha256, plus the decomposition temperature; the model id changes, so engines and caches
of the old id are rebuilt.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch

from uar_stream.backends.shipped import SHIP_HINT
from uar_stream.datasets.ferplus import calibration_split, load_npz, training_faces
from uar_stream.errors import ConfigError, ModelError
from uar_stream.labels import majority_label
from uar_stream.model.density import DENSITY_FILE, SHRINKAGE, fit_density, save_density
from uar_stream.model.ensemble import load_ensemble
from uar_stream.model.preprocess import prepare_batch
from uar_stream.model.store import ShippedInt8, file_sha256, model_id, read_manifest, write_manifest

log = logging.getLogger("uar_stream.evaluation")


def member_features(model_dir: str | Path, images: np.ndarray, batch: int = 256) -> np.ndarray:
    """uint8 (N, S, S) faces -> the members' penultimate features (N, M, D) float32, through
    the same preparation as every engine (``prepare_batch``)."""
    net, _ = load_ensemble(model_dir)
    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            x = torch.from_numpy(prepare_batch(images[i:i + batch]))
            out.append(net.logits_and_features(x)[1].float().numpy())
    return np.concatenate(out)


def fit_model_density(model_dir: str | Path, train: str | Path, exclude: str | Path | None,
                      limit: int = 0, decomposition_temperature: float = 1.0, seed: int = 0) -> dict:
    """Fit, write ``density.safetensors`` and update the manifest; returns its ``density`` entry.
    ``limit``: at most this many training faces (a seeded sample; 0 = all)."""
    if limit < 0:
        raise ConfigError(f"--limit: {limit} is out of range; allowed: 0 (all) or more")
    if not 0.05 <= decomposition_temperature <= 20:
        raise ConfigError(f"--decomposition-temperature: {decomposition_temperature} is out of "
                          "range; allowed: 0.05-20")
    model_dir = Path(model_dir)
    man = read_manifest(model_dir)
    raw = load_npz(train)
    faces, _ = training_faces(raw, load_npz(exclude) if exclude else None)
    tr = man.training or {}
    fit, held = calibration_split(faces, float(tr.get("calibration_fraction", 0.05)),
                                  int(tr.get("seed", 0)))
    if limit and limit < len(fit):
        fit = fit.subset(np.sort(np.random.default_rng(seed).permutation(len(fit))[:limit]))
    t = time.perf_counter()
    feats = member_features(model_dir, fit.images)
    labels = majority_label(fit.votes)
    try:
        dm = fit_density(feats, labels, len(man.classes))
    except ValueError as e:
        raise ModelError(f"{model_dir}: cannot fit the density on {len(fit)} faces ({e})") from None
    path = model_dir / DENSITY_FILE
    save_density(dm, path)
    entry = {"file": DENSITY_FILE, "sha256": file_sha256(path),
             "fit": {"data_sha256": raw.sha256, "faces": len(fit), "held_out": len(held),
                     "feature_dim": dm.dim, "shrinkage": SHRINKAGE, "seed": seed,
                     "score": "mean over members of min_c Mahalanobis(f, mu_c; shared cov) / D",
                     "seconds": round(time.perf_counter() - t, 1)}}
    man.density = entry
    man.decomposition_temperature = float(decomposition_temperature)
    write_manifest(model_dir, man)
    log.info("density: fitted on %d faces (D=%d) in %.0f s", len(fit), dm.dim, time.perf_counter() - t)
    _warn_if_int8_stale(model_dir, man)
    return entry


def _warn_if_int8_stale(model_dir: Path, man) -> None:
    """The density is part of the model (its id, the int8 graph's outputs): a shipped int8 file
    quantised before this fit no longer matches. Say so now, with the command that rebuilds it,
    rather than only as a WARNING when a run loads the model."""
    int8 = ShippedInt8.from_manifest(man)
    now = model_id(model_dir) if int8 is not None else ""  # hashes every weight file: once
    if int8 is not None and int8.model_id != now:
        log.warning("density: %s was quantised from the model before this fit (model %s, now %s): "
                    "precision auto runs fp32 until it is rebuilt: %s", model_dir / int8.file,
                    int8.model_id, now, SHIP_HINT.format(model=model_dir))
