"""``uar-stream calibrate``: routing thresholds fitted to target rates on in-distribution faces.

OOD gate (``routing.ood_gate``), fitted so that it rejects ``id_reject`` of the clean faces:
  mutual_information: tau_epistemic is the (1 - id_reject) quantile of epistemic uncertainty;
  density: tau_density is the (1 - id_reject) quantile of the density score;
  either: both at the one common quantile for which their OR rejects ``id_reject``.
  The threshold of a signal the gate does not use is set at its own (1 - id_reject) quantile,
  so switching the gate later stays sensible.
tau_aleatoric: among faces that pass the epistemic gate (the router checks it first), either
  - flag a stated share of all faces as ambiguous (``ambiguous_rate``), or
  - flag as many faces as possible while at least ``ambiguous_precision`` of the flagged ones
    are faces the annotators disagreed on (top label < 50% of the votes).
Without either target, the rate defaults to the share of disagreed-on faces in the data.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from uar_stream.config import AnalyzerConfig, load_config
from uar_stream.datasets.ferplus import FaceSet, load_npz
from uar_stream.errors import ConfigError, DataError, SinkError
from uar_stream.evaluation.evaluate import ambiguous_mask
from uar_stream.evaluation.gates import either_thresholds
from uar_stream.evaluation.predict import Predictor
from uar_stream.evaluation.retention import threshold_for_rate
from uar_stream.labels import emotion_rows
from uar_stream.version import __version__


@dataclass
class Thresholds:
    """Fitted routing thresholds, the targets asked for and the rates achieved."""

    tau_epistemic: float
    tau_aleatoric: float
    targets: dict
    achieved: dict
    ood_gate: str = "mutual_information"
    tau_density: float | None = None


def gate_thresholds(epistemic: np.ndarray, density: np.ndarray | None, gate: str,
                    id_reject: float) -> tuple[float, float | None, np.ndarray]:
    """(tau_epistemic, tau_density or None, passed mask) of ``gate`` rejecting ``id_reject`` of
    these in-distribution faces."""
    if density is None:
        gate = "mutual_information"  # what the router does without a density file
    tau_e = threshold_for_rate(epistemic, id_reject)
    tau_d = None if density is None else threshold_for_rate(density, id_reject)
    if gate == "either":
        tau_e, tau_d, _ = either_thresholds(epistemic, density, id_reject)
    if gate == "mutual_information":
        passed = epistemic <= tau_e
    elif gate == "density":
        passed = density <= tau_d
    else:
        passed = (epistemic <= tau_e) & (density <= tau_d)
    return float(tau_e), None if tau_d is None else float(tau_d), passed


def tau_for_precision(scores: np.ndarray, positive: np.ndarray, precision: float,
                      min_flagged: int = 10) -> tuple[float, float, int]:
    """Lowest threshold t (most faces flagged by ``score > t``) whose flagged faces are at least
    ``precision`` positive; at least ``min_flagged`` faces flagged. Returns (t, precision, k).
    Raises ValueError with the best precision reachable when none qualifies."""
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    s, pos = np.asarray(scores, np.float64)[order], np.asarray(positive, bool)[order]
    k = np.arange(1, len(s) + 1)
    prec = np.cumsum(pos) / k
    # A cut after the k-th face is only realisable when the next score is strictly lower.
    cut_ok = np.r_[s[:-1] > s[1:], True]
    ok = cut_ok & (prec >= precision) & (k >= min(min_flagged, len(s)))
    if not ok.any():
        best = float(prec[cut_ok & (k >= min(min_flagged, len(s)))].max())
        raise ValueError(f"best reachable precision is {best:.3f}")
    i = int(np.flatnonzero(ok)[-1])
    t = float(s[i + 1]) if i + 1 < len(s) else float(np.nextafter(s[-1], -np.inf))
    return t, float(prec[i]), i + 1


def fit(epistemic: np.ndarray, aleatoric: np.ndarray, disagreed: np.ndarray | None,
        id_reject: float, ambiguous_rate: float | None = None,
        ambiguous_precision: float | None = None, density: np.ndarray | None = None,
        ood_gate: str = "mutual_information") -> Thresholds:
    """Thresholds from per-face uncertainties (N,) of clean in-distribution faces.
    ``disagreed`` (N,) bool marks faces the annotators disagreed on (None: no votes);
    ``density`` (N,): the density scores (None: the model has none)."""
    n = len(epistemic)
    if density is None:
        ood_gate = "mutual_information"  # what the router does without a density file
    tau_e, tau_d, passed = gate_thresholds(epistemic, density, ood_gate, id_reject)
    targets: dict = {"id_false_reject": id_reject, "ood_gate": ood_gate}
    if ambiguous_precision is not None:
        if disagreed is None:
            raise DataError("--ambiguous-precision needs annotator votes in the data ('votes')")
        targets["ambiguous_precision"] = ambiguous_precision
        try:
            tau_a, _, _ = tau_for_precision(aleatoric[passed], disagreed[passed], ambiguous_precision)
        except ValueError as e:
            raise ConfigError(f"--ambiguous-precision {ambiguous_precision}: not reachable on this "
                              f"data ({e})") from None
    else:
        if ambiguous_rate is None:
            if disagreed is None:
                raise DataError("no --ambiguous-rate given and the data has no votes to derive it from")
            ambiguous_rate = float(disagreed.mean())
            targets["ambiguous_rate_from"] = "share of faces whose top label has < 50% of the votes"
        targets["ambiguous_rate"] = ambiguous_rate
        share = min(1.0, ambiguous_rate * n / max(int(passed.sum()), 1))
        tau_a = threshold_for_rate(aleatoric[passed], share)
    flagged = passed & (aleatoric > tau_a)
    achieved = {"n": n, "id_false_reject": float((~passed).mean()),
                "ambiguous_rate": float(flagged.mean())}
    if disagreed is not None:
        achieved["ambiguous_precision"] = float(disagreed[flagged].mean()) if flagged.any() else None
        achieved["ambiguous_recall"] = (float(flagged[disagreed].mean()) if disagreed.any() else None)
        achieved["disagreed_share"] = float(disagreed.mean())
    return Thresholds(float(tau_e), float(tau_a), targets, achieved, ood_gate, tau_d)


def load_faces(path: Path) -> tuple[FaceSet, np.ndarray | None, dict]:
    """FER+-layout faces (unknown/NF-majority rows dropped), or an .npz with only ``images``
    (the user's own aligned crops: no votes, so no precision target)."""
    try:
        with np.load(path, allow_pickle=False) as d:
            has_votes = "votes" in d.files
            images = d["images"] if not has_votes and "images" in d.files else None
    except (OSError, ValueError):
        has_votes = True  # let load_npz report the problem
    if not has_votes and images is not None:
        if images.ndim != 3 or images.dtype != np.uint8:
            raise DataError(f"{path}: 'images' must be uint8 [N,S,S], got {images.dtype} {images.shape}")
        faces = FaceSet(images, np.zeros((len(images), 10), np.uint8),
                        hashlib.sha256(images.tobytes()).hexdigest())
        return faces, None, {"rows": len(images), "votes": False}
    faces = load_npz(path)
    keep = emotion_rows(faces.votes)
    kept = faces.subset(np.flatnonzero(keep))
    return kept, ambiguous_mask(kept.votes), {"rows": len(faces), "votes": True,
                                              "dropped_unknown_or_nf": int((~keep).sum())}


def _round_up(x: float, nd: int = 9) -> float:
    """``x`` to ``nd`` decimals for the YAML (finer than float32 steps), never below ``x``: the
    routers reject strictly above a threshold, and scores tie (float32), so a threshold rounded
    down would reject the faces that sit exactly on it."""
    r = round(x, nd)
    return r if r >= x else round(r + 10 ** -nd, nd)


def calibrate(data: Path, out: Path, model: Path, config: str | None, id_reject: float,
              ambiguous_rate: float | None, ambiguous_precision: float | None,
              cache: Path | None = None, ood_gate: str | None = None
              ) -> tuple[AnalyzerConfig, Thresholds, dict]:
    """Fit the thresholds on ``data`` and write a full config to ``out`` (module docstring);
    ``ood_gate`` None: the base config's ``routing.ood_gate``."""
    for name, v in (("--id-reject", id_reject), ("--ambiguous-rate", ambiguous_rate),
                    ("--ambiguous-precision", ambiguous_precision)):
        if v is not None and not 0.0 < v < 1.0:
            raise ConfigError(f"{name}: {v} is out of range; allowed: between 0 and 1")
    faces, disagreed, info = load_faces(data)
    if len(faces) < 20:
        raise DataError(f"{data}: only {len(faces)} usable faces; calibration needs at least 20")
    base = load_config(config)
    # thresholds for the outputs the config's engine gives: with flip TTA when it asks for it
    pred = Predictor(model, cache, flip_tta=base.engine.flip_tta)
    scores = pred.predict(faces.images)
    dens = None if scores.density is None else scores.density.astype(np.float64)
    gate = ood_gate or base.routing.ood_gate
    th = fit(scores.epistemic.astype(np.float64), scores.aleatoric.astype(np.float64), disagreed,
             id_reject, ambiguous_rate, ambiguous_precision, dens, gate)
    overrides = {"routing.tau_epistemic": _round_up(th.tau_epistemic),
                 "routing.tau_aleatoric": _round_up(th.tau_aleatoric),
                 "routing.ood_gate": th.ood_gate, "model.path": str(model)}
    if th.tau_density is not None:
        overrides["routing.tau_density"] = _round_up(th.tau_density)
    cfg = load_config(config, overrides)
    section = {
        "data": str(data), "data_sha256": faces.sha256, "data_rows": info["rows"],
        "faces_used": len(faces), "model": str(model), "model_id": pred.model_id,
        "flip_tta": base.engine.flip_tta,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "uar_stream_version": __version__,
        "targets": th.targets,
        "achieved": {k: (round(v, 4) if isinstance(v, float) else v) for k, v in th.achieved.items()},
    }
    doc = cfg.to_dict()
    doc["calibration"] = section
    header = ("# Written by `uar-stream calibrate`: a full uar-stream config whose routing thresholds\n"
              "# were fitted on the data named in `calibration` (ignored when the config is loaded).\n")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(header + yaml.safe_dump(doc, sort_keys=False))
    except OSError as e:
        raise SinkError(f"cannot write {out}: {e.strerror}") from None
    return cfg, th, section
