"""``uar-stream evaluate``: dual validation of the two uncertainties on a FER+-layout .npz.

1. Aleatoric vs annotator disagreement (Spearman with a bootstrap CI) on clean faces.
2. Epistemic: AUROC of clean vs corrupted faces, 15 ImageNet-C types x 5 severities.
3. Cross-sensitivity: the same AUROC for aleatoric/total, the same Spearman for epistemic/total.
4. Retention of ambiguous in-distribution faces at matched OOD rejection (UAR vs one score).
5. Optional LDL baseline (one model; its only uncertainty is its predictive entropy).
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from uar_stream import metrics
from uar_stream.datasets.ferplus import load_npz
from uar_stream.evaluation import separation
from uar_stream.evaluation.corruptions import CORRUPTIONS, SAME_AS_RESAMPLING, SEVERITIES, VALIDATION
from uar_stream.evaluation.gates import GateScorer
from uar_stream.evaluation.predict import CPU_ENGINES, Predictor, Scores, SetScorer
from uar_stream.evaluation.protocols import PROTOCOLS, parse_set_name, set_names
from uar_stream.evaluation.retention import retention_curve
from uar_stream.evaluation.sets import RESAMPLE, generate, set_key, set_stem
from uar_stream.labels import emotion_rows, majority_label, vote_entropy
from uar_stream.version import __version__

log = logging.getLogger("uar_stream.evaluation")

#: Target OOD rejection rates of the retention curve; MATCHED_RATE is the headline point.
RATES = np.round(np.arange(0.05, 0.96, 0.05), 2)
MATCHED_RATE = 0.5
#: A face is "ambiguous" when its top annotator label has fewer than this share of the votes.
AMBIGUOUS_TOP_SHARE = 0.5
ROUTERS = {"uar": "epistemic", "total_entropy": "total", "max_softmax": "max_softmax"}


@dataclass
class EvalOptions:
    """What ``uar-stream evaluate`` was asked for (its options); ``timings`` is filled in."""

    data: Path
    out: Path
    model: Path
    ldl: Path | None = None
    limit: int = 0
    cache: Path | None = None
    corruptions: tuple[str, ...] = CORRUPTIONS
    #: The held-out corruptions every choice is made on (never the test ``corruptions``).
    validation: tuple[str, ...] = VALIDATION
    severities: tuple[int, ...] = SEVERITIES
    # Severities the LDL baseline is run on. None: the highest only, which is all its claims
    # need (disagreement on clean faces; rejection and retention at the top severity); it
    # saves ~250 CPU-s of a ~40 CPU-min cold PublicTest run.
    ldl_severities: tuple[int, ...] | None = None
    # Share of the faces the TEST corruptions are scored on below the highest severity (a
    # fixed seeded sample; 1.0: every face). The headline severity, the validation types and
    # the clean and resampled faces always use every face. 0.5 halves the largest cost of a
    # cold run (scoring ~440k corrupted faces) at a standard error of ~0.003 on a per-
    # severity mean AUROC (docs/evaluation.md#cost).
    low_severity_sample: float = 0.5
    workers: int = 0
    seed: int = 0
    bootstrap: int = 1000
    progress: bool = True
    timings: dict = field(default_factory=dict)


def ambiguous_mask(votes: np.ndarray) -> np.ndarray:
    """Faces whose top annotator label holds < 50% of all the votes cast (N,)."""
    v = np.asarray(votes, np.float64)
    return v[:, :8].max(1) < AMBIGUOUS_TOP_SHARE * v.sum(1)


def _r(x: float | None, nd: int = 4):
    return None if x is None or not np.isfinite(x) else round(float(x), nd)


def _rci(d: dict) -> dict:
    return {k: _r(v) for k, v in d.items()}


def load_faces(opts: EvalOptions):
    """(the faces with an emotion majority, the first ``limit`` of them; a data summary)."""
    faces = load_npz(opts.data)
    keep = emotion_rows(faces.votes)
    kept = faces.subset(np.flatnonzero(keep))
    if opts.limit:
        kept = kept.subset(np.arange(min(opts.limit, len(kept))))
    info = {"path": str(opts.data), "sha256": faces.sha256, "rows": len(faces),
            "dropped_unknown_or_nf": int((~keep).sum()), "limit": opts.limit or None}
    return kept, info


def ldl_severities(opts: EvalOptions) -> tuple[int, ...]:
    """The LDL model's severities: those asked for, always with the highest (retention)."""
    return tuple(sorted({s for s in opts.severities if s in (opts.ldl_severities or ())}
                        | {max(opts.severities)}))


def sample_rows(n: int, fraction: float, seed: int) -> np.ndarray | None:
    """Sorted indices of a seeded sample of ``fraction`` of ``n`` faces (None: all of them)."""
    k = int(round(fraction * n))
    if k >= n:
        return None
    return np.sort(np.random.default_rng([seed, 0x5A3]).permutation(n)[:max(k, 1)])


def sampled_sets(opts: EvalOptions, sids: list, n: int) -> dict:
    """{set id: face indices} for the sets built from a sample: the test corruptions' sets
    (either protocol) below the highest severity (``low_severity_sample``)."""
    rows = sample_rows(n, opts.low_severity_sample, opts.seed)
    if rows is None:
        return {}
    top = max(opts.severities)
    return {sid: rows for sid in sids
            if sid[0] != RESAMPLE and parse_set_name(sid[0])[0] in opts.corruptions and sid[1] < top}


def collect_scores(opts: EvalOptions, images: np.ndarray, predictors: dict[str, Predictor]):
    """Scores of every model on the clean faces and on its corrupted sets (the LDL model only
    at ``ldl_severities``). Returns ({model: Scores}, {model: {(name, severity): Scores}})."""
    key = set_key(images, opts.seed)
    # Both protocols' sets (the 224 ones are shared) of the test and validation corruptions;
    # sets whose faces equal the round trip's are not built again but share its scores.
    names = set_names(tuple(opts.corruptions) + tuple(opts.validation))
    every = [(n, s) for n in names for s in opts.severities] + [(RESAMPLE, 0)]
    sids = [sid for sid in every if sid not in SAME_AS_RESAMPLING]
    rows = sampled_sets(opts, sids, len(images))
    # The LDL baseline is measured as the paper measured it: paper sets of the test corruptions.
    wanted = {m: set(sids) if m != "ldl" else
              {sid for sid in sids if sid[1] in ldl_severities(opts) and sid[0] in opts.corruptions}
              for m in predictors}
    t = time.perf_counter()
    clean = {m: p.cached(key, "clean") or p.predict(images, key, "clean") for m, p in predictors.items()}
    corrupted, need = _cached_sets(predictors, key, sids, wanted, rows)
    t_clean = time.perf_counter() - t
    todo = {sid: tuple(m for m in predictors if sid in wanted[m] and sid not in corrupted[m])
            for sid in need}
    scorer = _worker_scorer(opts, predictors, todo, key, rows)
    tally = _score_sets(opts, images, predictors, key, todo, scorer, corrupted, len(sids), rows)
    _label_rows(corrupted, rows, [sid for sid in every if sid in SAME_AS_RESAMPLING])
    opts.timings.update({
        "clean_inference_s": round(t_clean, 1),
        "corrupted_sets_s": round(tally.wall_s, 1),
        "inference_in": ("workers" if scorer is not None else "main process" if need
                         else "none (every set's predictions were cached)"),
        # CPU seconds summed over the processes: where the work went.
        "corruption_cpu_s": round(tally.build_cpu_s, 1),
        "corrupted_inference_cpu_s": round(tally.infer_cpu_s, 1) if scorer is not None else None,
        # Wall time this process spent inferring (when it does; workers build meanwhile).
        "corrupted_inference_s": round(tally.infer_s, 1) if scorer is None else None,
        "sets_total": len(sids), "sets_from_prediction_cache": len(sids) - len(need),
        "sets_from_image_cache": tally.from_image_cache, "sets_built": len(need) - tally.from_image_cache,
        "sets_sampled": len(rows), "sets_same_as_resampling": len(every) - len(sids),
    })
    return clean, corrupted


def _label_rows(corrupted: dict, rows: dict, aliases: list) -> None:
    """Mark each sampled set's Scores with its face indices, and give the sets equal to the
    resampling round trip its Scores."""
    for sets in corrupted.values():
        for sid, r in rows.items():
            if sid in sets:
                sets[sid] = dataclasses.replace(sets[sid], rows=r)
        if (RESAMPLE, 0) in sets:
            sets.update({sid: sets[(RESAMPLE, 0)] for sid in aliases})


def _cached_sets(predictors: dict[str, Predictor], key: str, sids: list, wanted: dict, rows: dict):
    """({model: {sid: Scores}} found in the prediction cache, [sids some model still needs])."""
    corrupted = {m: {} for m in predictors}
    need = []
    for sid in sids:
        r = rows.get(sid)
        for m, p in predictors.items():
            got = (p.cached(key, set_stem(sid, r), None if r is None else len(r))
                   if sid in wanted[m] else None)
            if got is not None:
                corrupted[m][sid] = got
        if any(sid in wanted[m] and sid not in corrupted[m] for m in predictors):
            need.append(sid)
    return corrupted, need


@dataclass
class _SetTally:
    """What building and scoring the needed corrupted sets took."""

    wall_s: float = 0.0
    infer_s: float = 0.0  # wall time of this process's inference (no worker scorer)
    build_cpu_s: float = 0.0
    infer_cpu_s: float = 0.0  # CPU time of the workers' inference (worker scorer)
    from_image_cache: int = 0


def _score_sets(opts: EvalOptions, images: np.ndarray, predictors: dict[str, Predictor], key: str,
                todo: dict, scorer: SetScorer | None, corrupted: dict, n_sets: int,
                rows: dict) -> _SetTally:
    """Build (or load) every set in ``todo`` and score it into ``corrupted`` ({model: {sid: Scores}});
    one progress step (bar, or a log line without one) per set."""
    tally = _SetTally()
    t0 = time.perf_counter()
    n_cached = n_sets - len(todo)
    bar = tqdm(total=n_sets, initial=n_cached, desc="corrupted sets", unit="set",
               disable=not opts.progress, leave=False)
    for n_done, built in enumerate(generate(images, list(todo), opts.cache, opts.seed, opts.workers,
                                            score=scorer, rows=rows), 1):
        sid = built.sid
        tally.from_image_cache += built.from_cache
        tally.build_cpu_s += built.build_cpu_s
        if scorer is not None:  # scored in the worker that built it
            for m, sc in built.value["scores"].items():
                corrupted[m][sid] = sc
            tally.infer_cpu_s += built.value["cpu_s"]
        else:
            t = time.perf_counter()
            for m in todo[sid]:
                corrupted[m][sid] = predictors[m].predict(built.value, key, set_stem(sid, rows.get(sid)))
            tally.infer_s += time.perf_counter() - t
        bar.set_postfix_str(f"{sid[0]} {sid[1]}")
        bar.update(1)
        if not opts.progress:  # no bar (not a terminal): one log line per set instead
            log.info("corrupted set %d/%d done: %s severity %d (%s, %.0f s elapsed)",
                     n_cached + n_done, n_sets, sid[0], sid[1],
                     "cached images" if built.from_cache else "built", time.perf_counter() - t0)
    bar.close()
    tally.wall_s = time.perf_counter() - t0
    return tally


def _worker_scorer(opts: EvalOptions, predictors: dict[str, Predictor], todo: dict,
                   key: str, rows: dict) -> SetScorer | None:
    """A scorer for the workers when the sets are built in worker processes and every model
    that still has sets to score runs on the CPU; None: this process infers (a GPU engine is
    best fed from one process, and one worker process gains nothing)."""
    models = {m for ms in todo.values() for m in ms}
    if not models or (opts.workers or os.cpu_count() or 1) <= 1 or len(todo) <= 1:
        return None
    # Builds (and exports, once) each engine here, so the workers only load it.
    names = {m: predictors[m].engine.name for m in models}
    if not all(n in CPU_ENGINES for n in names.values()):
        return None
    return SetScorer(models={m: str(predictors[m].model_dir) for m in models},
                     backends={m: CPU_ENGINES[n] for m, n in names.items()},
                     cache_dir=opts.cache, set_key=key, todo=todo, rows=rows)


def auroc_tables(opts: EvalOptions, clean: Scores, corrupted: dict, field_name: str,
                 severities: tuple[int, ...] | None = None):
    """{corruption: {"1".."5": AUROC}} and the per-severity mean over corruptions."""
    severities = severities or opts.severities
    table = {c: {str(s): _r(metrics.auroc(clean.score(field_name), corrupted[(c, s)].score(field_name)))
                 for s in severities} for c in opts.corruptions}
    mean = {str(s): _r(np.mean([table[c][str(s)] for c in opts.corruptions])) for s in severities}
    return table, mean


def retention(opts: EvalOptions, clean: Scores, corrupted: dict, amb: np.ndarray,
              routers: dict[str, str]) -> dict:
    """Each router's retention curve at the highest severity, all corruptions pooled as OOD,
    the ambiguous clean faces as ID; ``routers``: {name: Scores field}."""
    sev = max(opts.severities)
    ood = {r: np.concatenate([corrupted[(c, sev)].score(f) for c in opts.corruptions])
           for r, f in routers.items()}
    ident = {r: clean.score(f)[amb] for r, f in routers.items()}
    rates = np.unique(np.r_[RATES, MATCHED_RATE])
    curve = retention_curve(ood, ident, rates)
    at = next(row for row in curve if abs(row["rate"] - MATCHED_RATE) < 1e-9)
    return {"curve": curve, "at": at, "ood_severity": sev,
            "n_ood": int(len(next(iter(ood.values())))), "n_ambiguous": int(amb.sum())}


def _ratio(a: float, b: float) -> float | None:
    return _r(a / b, 3) if b > 0 else None


def run(opts: EvalOptions) -> tuple[dict, dict]:
    """Returns (report, per-face arrays of the clean faces for plots: aleatoric, epistemic,
    total, disagreement (N,), ambiguous (N,) bool)."""
    t0 = time.perf_counter()
    faces, data_info = load_faces(opts)
    images, votes = faces.images, faces.votes
    labels, disagreement, amb = majority_label(votes), vote_entropy(votes), ambiguous_mask(votes)
    predictors = {"model": Predictor(opts.model, opts.cache)}
    if opts.ldl:
        predictors["ldl"] = Predictor(opts.ldl, opts.cache)
    clean, corrupted = collect_scores(opts, images, predictors)
    t_metrics = time.perf_counter()

    c, cor = clean["model"], corrupted["model"]
    sp = lambda a: _rci(metrics.spearman_ci(a, disagreement, opts.bootstrap, seed=opts.seed))  # noqa: E731
    report = {
        "uar_stream_version": __version__,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "model": _model_info(opts.model, predictors["model"]),
        "data": data_info,
        "data_sha256": data_info["sha256"],
        "n": int(len(images)),
        "n_ambiguous": int(amb.sum()),
        **_calibration(c, labels),
        **_uncertainty_sections(opts, c, cor, sp),
        "retention": _retention_section(opts, c, cor, amb),
        **_separation_sections(opts, predictors["model"], c, cor, labels, disagreement, amb, sp),
        "corruptions": list(opts.corruptions),
        "validation_corruptions": list(opts.validation),
        "severities": list(opts.severities),
        "low_severity_sample": _sample_info(opts, len(images)),
        "seed": opts.seed,
        "bootstrap_resamples": opts.bootstrap,
    }
    if "ldl" in predictors:
        report["ldl"] = ldl_section(opts, clean["ldl"], corrupted["ldl"], labels, amb, sp,
                                    predictors["ldl"])
    opts.timings["metrics_s"] = round(time.perf_counter() - t_metrics, 1)
    opts.timings["total_s"] = round(time.perf_counter() - t0, 1)
    report["timings_s"] = dict(opts.timings)
    arrays = {"aleatoric": c.aleatoric, "epistemic": c.epistemic, "total": c.total,
              "disagreement": disagreement.astype(np.float32), "ambiguous": amb,
              "majority_label": labels}
    return report, arrays


def _separation_sections(opts: EvalOptions, predictor: Predictor, c: Scores, cor: dict, labels,
                         disagreement, amb, sp) -> dict:
    """Protocol v2: the shift tables of both protocols, a section per gate, the default gate
    chosen on validation and the decomposition temperature study (separation.py)."""
    inp = separation.Inputs(c, cor, labels, disagreement, amb, tuple(opts.corruptions),
                            tuple(opts.validation), tuple(opts.severities), sp)
    gs = GateScorer(c)
    tables = {p: separation.shift_table(inp, gs, p, inp.test + inp.validation) for p in PROTOCOLS}
    gates, default = separation.gate_sections(inp, tables)
    man = predictor.manifest
    return {
        "protocols": {p: {"corruptions": {k: v for k, v in tables[p].items() if k in inp.test},
                          "validation": {k: v for k, v in tables[p].items() if k in inp.validation}}
                      for p in PROTOCOLS},
        "gates": gates,
        "default_gate": default,
        "decomposition_temperature": {
            "used": man.uncertainty_temperature, "calibration": man.temperature,
            "validation": separation.temperature_study(inp, man.uncertainty_temperature, man.temperature)},
    }


def _sample_info(opts: EvalOptions, n: int) -> dict:
    """What the test corruptions below the highest severity were scored on."""
    rows = sample_rows(n, opts.low_severity_sample, opts.seed)
    return {"fraction": opts.low_severity_sample, "faces": n if rows is None else int(len(rows)),
            "of": n, "applies_to": f"the test corruptions at severities below {max(opts.severities)} "
            "(both protocols); every other set uses every face"}


def _model_info(path: Path, predictor: Predictor) -> dict:
    man = predictor.manifest
    return {"path": str(path), "id": predictor.model_id, "members": man.members,
            "backbone": man.backbone, "temperature": man.temperature,
            "decomposition_temperature": man.uncertainty_temperature,
            "density": man.density is not None,
            "engine": getattr(predictor._engine, "name", "cached predictions")}


def _calibration(c: Scores, labels: np.ndarray) -> dict:
    rel = metrics.reliability(c.mean_probs, labels)
    return {
        "accuracy": _r(metrics.accuracy(c.mean_probs, labels)),
        "ece": _r(metrics.ece(c.mean_probs, labels, 15)),
        "reliability": {"confidence": [_r(x) for x in rel.confidence],
                        "accuracy": [_r(x) for x in rel.accuracy], "count": rel.count.tolist()},
    }


def _uncertainty_sections(opts: EvalOptions, c: Scores, cor: dict, sp) -> dict:
    """Each uncertainty against annotator disagreement (``sp``: Spearman with CI) and against
    corruption (AUROC), plus the resampling-only control."""
    auroc_e, mean_e = auroc_tables(opts, c, cor, "epistemic")
    auroc_a, mean_a = auroc_tables(opts, c, cor, "aleatoric")
    auroc_t, mean_t = auroc_tables(opts, c, cor, "total")
    return {
        "spearman_aleatoric_disagreement": sp(c.aleatoric),
        "auroc_epistemic": auroc_e,
        "auroc_epistemic_mean": mean_e,
        "cross_sensitivity": {
            "auroc_aleatoric_mean": mean_a,
            "auroc_total_mean": mean_t,
            "auroc_aleatoric": auroc_a,
            "auroc_total": auroc_t,
            "spearman_epistemic_disagreement": sp(c.epistemic),
            "spearman_total_disagreement": sp(c.total),
        },
        "resampling_control": {
            f"auroc_{f}": _r(metrics.auroc(c.score(f), cor[(RESAMPLE, 0)].score(f)))
            for f in ("epistemic", "aleatoric", "total")},
    }


def _retention_section(opts: EvalOptions, c: Scores, cor: dict, amb: np.ndarray) -> dict:
    ret = retention(opts, c, cor, amb, ROUTERS)
    at = ret["at"]
    return {
        "ood_rejection_rate": MATCHED_RATE,
        "ood": f"severity-{ret['ood_severity']} corrupted faces, {len(opts.corruptions)} types pooled",
        "ambiguous_id": f"clean faces whose top annotator label has < {AMBIGUOUS_TOP_SHARE:.0%} of the votes",
        "n_ood": ret["n_ood"], "n_ambiguous": ret["n_ambiguous"],
        "uar_retained": _r(at["uar"]["kept"]),
        "single_retained": _r(at["total_entropy"]["kept"]),
        "max_softmax_retained": _r(at["max_softmax"]["kept"]),
        "ratio": _ratio(at["uar"]["kept"], at["total_entropy"]["kept"]),
        "ratio_max_softmax": _ratio(at["uar"]["kept"], at["max_softmax"]["kept"]),
        "achieved_ood_rejection": {k: _r(at[k]["ood_rejected"]) for k in ROUTERS},
        "curve": [{"rate": row["rate"], **{k: _r(row[k]["kept"]) for k in ROUTERS},
                   "thresholds": {k: _r(row[k]["threshold"], 6) for k in ROUTERS}}
                  for row in ret["curve"]],
    }


def ldl_section(opts, c: Scores, cor: dict, labels, amb, sp, predictor: Predictor) -> dict:
    """The LDL baseline: its one uncertainty is the predictive entropy (``total``)."""
    sev = ldl_severities(opts)
    table, mean = auroc_tables(opts, c, cor, "total", sev)
    ret = retention(opts, c, cor, amb, {"entropy": "total"})
    at = ret["at"]["entropy"]
    return {
        "model": {"path": str(opts.ldl), "id": predictor.model_id,
                  "members": predictor.manifest.members},
        "accuracy": _r(metrics.accuracy(c.mean_probs, labels)),
        "ece": _r(metrics.ece(c.mean_probs, labels, 15)),
        "spearman_entropy_disagreement": sp(c.total),
        "severities": list(sev),
        "auroc_entropy": table,
        "auroc_entropy_mean": mean,
        # With one score it can only reject like the single-uncertainty router.
        "retained_at_matched_rate": _r(at["kept"]),
        "curve": [{"rate": row["rate"], "entropy": _r(row["entropy"]["kept"])} for row in ret["curve"]],
    }
