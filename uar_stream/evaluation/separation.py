"""Protocol v2 sections of the report: per-protocol shift tables, the validation figures, one
section per OOD gate, the gate chosen on validation and the decomposition temperature study.

Every choice is made on the VALIDATION corruptions (``auroc_val_mean``, ``retention_val``);
the 15 test corruptions are only reported (docs/evaluation.md).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from uar_stream import metrics
from uar_stream.evaluation.gates import GateScorer
from uar_stream.evaluation.protocols import (
    PROTOCOLS,
    VALIDATION_MEAN,
    negatives,
    on_native_grid,
    set_name,
)
from uar_stream.evaluation.retention import operate
from uar_stream.evaluation.sets import RESAMPLE
from uar_stream.model.uncertainty import decompose

#: OOD rejection rates of the gates' retention curves; HEADLINE_RATE is the paper's point.
GATE_RATES = tuple(round(r, 1) for r in np.arange(0.1, 0.91, 0.1))
HEADLINE_RATE = 0.5
#: A corruption that costs the model less accuracy than this (at every severity) is flagged
#: "not a shift for this model": its AUROC says little about the gate.
NOT_A_SHIFT_DROP = 0.02
#: Spearman(gate score, disagreement) a gate may have and still count as separate from
#: ambiguity when the default is chosen.
SEPARATION_LIMIT = 0.25


def _r(x, nd: int = 4):
    return None if x is None or not np.isfinite(x) else round(float(x), nd)


@dataclass
class Inputs:
    """What the sections read: the model's clean Scores, its sets {(name, severity): Scores},
    the majority labels, annotator disagreement, the ambiguous mask, the corruption lists, the
    severities and a Spearman-with-CI function."""

    clean: object
    sets: dict
    labels: np.ndarray
    disagreement: np.ndarray
    ambiguous: np.ndarray
    test: tuple[str, ...]
    validation: tuple[str, ...]
    severities: tuple[int, ...]
    spearman: object

    def positives(self, corruption: str, protocol: str, severity: int):
        """The corrupted set of ``corruption`` under ``protocol``."""
        return self.sets[(set_name(corruption, protocol), severity)]

    def negatives(self, corruption: str, protocol: str):
        """Its in-distribution counterpart: clean or resampled faces."""
        return self.clean if negatives(corruption, protocol) == "clean" else self.sets[(RESAMPLE, 0)]


def shift_table(inp: Inputs, gs: GateScorer, protocol: str, corruptions: tuple[str, ...]) -> dict:
    """{corruption: {grid, negatives, accuracy_drop {sev}, not_a_shift, auroc {gate: {sev}},
    auroc_vs_clean {gate: {sev}} (the control, for resampled negatives)}}."""
    out = {}
    for c in corruptions:
        neg = inp.negatives(c, protocol)
        row: dict = {"grid": "48" if on_native_grid(c, protocol) else "224",
                     "negatives": negatives(c, protocol), "accuracy_drop": {}, "auroc": {}}
        for s in inp.severities:
            row["accuracy_drop"][str(s)] = _r(accuracy_drop(inp, inp.positives(c, protocol, s)))
        drops = [v for v in row["accuracy_drop"].values() if v is not None]
        row["not_a_shift"] = bool(drops) and max(drops) < NOT_A_SHIFT_DROP
        for g in gs.gates:
            row["auroc"][g] = {str(s): _r(metrics.auroc(gs.score(neg, g),
                                                         gs.score(inp.positives(c, protocol, s), g)))
                               for s in inp.severities}
        if row["negatives"] == "resampled":
            row["auroc_vs_clean"] = {g: {str(s): _r(metrics.auroc(
                gs.score(inp.clean, g), gs.score(inp.positives(c, protocol, s), g)))
                for s in inp.severities} for g in gs.gates}
        out[c] = row
    return out


def accuracy_drop(inp: Inputs, pos) -> float:
    """Clean accuracy minus the accuracy on a corrupted set, on the same faces (a sampled
    set's rows)."""
    rows = slice(None) if pos.rows is None else pos.rows
    labels = inp.labels[rows]
    return metrics.accuracy(inp.clean.mean_probs[rows], labels) - metrics.accuracy(pos.mean_probs, labels)


def _mean(table: dict, gate: str, corruptions, severities) -> dict:
    return {str(s): _r(np.mean([table[c]["auroc"][gate][str(s)] for c in corruptions]))
            for s in severities} if corruptions else {}


def gate_retention(inp: Inputs, gs: GateScorer, gate: str, corruptions: tuple[str, ...],
                   protocol: str = "native") -> dict:
    """Retention of ambiguous clean faces at each OOD rejection rate (severity-max sets of
    ``corruptions`` under ``protocol``, pooled), against total entropy on the same faces; at
    each rate also the share of ALL clean faces the gate rejects."""
    sev = max(inp.severities)
    ood_sets = [inp.positives(c, protocol, sev) for c in corruptions]
    ood = np.concatenate([gs.score(s, gate) for s in ood_sets])
    ood_total = np.concatenate([s.total for s in ood_sets])
    clean = gs.score(inp.clean, gate)
    curve = []
    for r in GATE_RATES:
        op = operate(ood, clean[inp.ambiguous], r)
        base = operate(ood_total, inp.clean.total[inp.ambiguous], r)
        curve.append({"rate": r, "kept": _r(op.kept), "total_entropy_kept": _r(base.kept),
                      "clean_rejection": _r(float((clean > op.threshold).mean())),
                      "threshold": _r(op.threshold, 6)})
    head = next(row for row in curve if abs(row["rate"] - HEADLINE_RATE) < 1e-9)
    kept = [row["kept"] for row in curve]
    span = GATE_RATES[-1] - GATE_RATES[0]
    area = float(np.trapezoid(kept, GATE_RATES) / span) if None not in kept else None
    tk = head["total_entropy_kept"]
    return {"ratio": _r(head["kept"] / tk, 3) if tk else None, "area": _r(area),
            "clean_rejection": head["clean_rejection"], "kept": head["kept"],
            "total_entropy_kept": tk, "ood_rejection_rate": HEADLINE_RATE, "ood_severity": sev,
            "protocol": protocol, "curve": curve}


def gate_sections(inp: Inputs, tables: dict) -> tuple[dict, str]:
    """({gate: its section}, the default gate chosen on validation). ``tables``:
    {protocol: shift_table over test + validation corruptions}."""
    gs = GateScorer(inp.clean)
    val = tuple(c for c in VALIDATION_MEAN if c in inp.validation)
    out = {}
    for g in gs.gates:
        out[g] = {
            "auroc_mean": {p: _mean(tables[p], g, inp.test, inp.severities) for p in PROTOCOLS},
            "auroc_val_mean": _mean(tables["native"], g, val, inp.severities),
            "auroc_val_mean_paper": _mean(tables["paper"], g, val, inp.severities),
            "spearman_disagreement": {k: _r(v) for k, v in inp.spearman(gs.score(inp.clean, g)).items()},
            "retention": gate_retention(inp, gs, g, inp.test),
            "retention_val": gate_retention(inp, gs, g, val) if val else None,
        }
    return out, choose_gate(out, str(max(inp.severities)))


def choose_gate(gates: dict, severity: str) -> str:
    """The default gate, from validation figures only: among gates whose |Spearman(score,
    disagreement)| <= SEPARATION_LIMIT (separate from ambiguity), the highest mean validation
    AUROC at ``severity`` (native protocol), ties to the better validation retention; when no
    gate is separate enough, the highest validation AUROC."""
    def key(g):
        sec = gates[g]
        ret = (sec.get("retention_val") or {}).get("ratio") or 0.0
        return (sec["auroc_val_mean"].get(severity) or 0.0, ret)

    separate = [g for g in gates
                if abs(gates[g]["spearman_disagreement"]["value"] or 1.0) <= SEPARATION_LIMIT]
    return max(separate or list(gates), key=key)


def temperature_study(inp: Inputs, t_decomposition: float, t_calibration: float) -> dict | None:
    """Validation figures of the mutual-information gate with the uncertainties decomposed at
    the model's decomposition temperature and at its calibration temperature (from the cached
    member probabilities); None when they were not stored."""
    val = tuple(c for c in VALIDATION_MEAN if c in inp.validation)
    sev = max(inp.severities)
    needed = [inp.clean] + [inp.positives(c, "native", sev) for c in val]
    if not val or any(s.member_probs is None for s in needed) or inp.sets.get((RESAMPLE, 0)) is None:
        return None
    out = {}
    for label, t in (("decomposition", t_decomposition), ("calibration", t_calibration)):
        rel = t / t_decomposition
        clean = decompose(inp.clean.member_probs, rel)
        aurocs = [metrics.auroc(decompose(inp.negatives(c, "native").member_probs, rel).epistemic,
                                decompose(inp.positives(c, "native", sev).member_probs, rel).epistemic)
                  for c in val]
        rho = lambda a, b: _r(metrics.spearman(a, b))  # noqa: E731
        out[label] = {"temperature": _r(t), f"auroc_val_mean_{sev}": _r(np.mean(aurocs)),
                      "spearman_epistemic_disagreement": rho(clean.epistemic, inp.disagreement),
                      "spearman_aleatoric_disagreement": rho(clean.aleatoric, inp.disagreement),
                      "spearman_epistemic_aleatoric": rho(clean.epistemic, clean.aleatoric)}
    return out
