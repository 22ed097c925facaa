"""report.md sections of protocol v2: the decomposition temperature, the gates (test and
validation figures, retention with clean rejection), and the per-corruption shift tables of
both protocols (accuracy drop, "not a shift" flags, AUROC per gate)."""
from __future__ import annotations

#: The paper's mean epistemic AUROC at severity 5 (paper protocol), reported beside ours.
PAPER_AUROC = 0.699


def _f(x, nd: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{nd}f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return (["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            + ["| " + " | ".join(r) + " |" for r in rows] + [""])


def temperature_lines(r: dict) -> list[str]:
    """The decomposition temperature: which one the model uses and the validation figures of both."""
    d = r.get("decomposition_temperature")
    if not d:
        return []
    lines = ["## Decomposition temperature", "",
             f"The uncertainties are decomposed at T = {_f(d['used'], 4)}; the displayed probabilities "
             f"(and accuracy, ECE) use the calibration temperature T = {_f(d['calibration'], 4)}.", ""]
    v = d.get("validation")
    if v:
        key = next(k for k in v["decomposition"] if k.startswith("auroc_val_mean"))
        rows = [[f"{label} (T = {_f(s['temperature'], 4)})", _f(s[key]),
                 _f(s["spearman_epistemic_disagreement"]), _f(s["spearman_aleatoric_disagreement"]),
                 _f(s["spearman_epistemic_aleatoric"])] for label, s in v.items()]
        lines += ["Mutual-information gate on the validation corruptions (native protocol):", ""]
        lines += _table(["decomposed at", f"mean AUROC, severity {key.rsplit('_', 1)[1]}",
                         "Spearman(epistemic, disagreement)", "Spearman(aleatoric, disagreement)",
                         "Spearman(epistemic, aleatoric)"], rows)
    return lines


def gate_lines(r: dict) -> list[str]:
    """One table over the gates, then the retention figures per gate."""
    gates, default = r.get("gates"), r.get("default_gate")
    if not gates:
        return []
    hi = str(r["severities"][-1])
    rows = []
    for name, g in gates.items():
        sp = g["spearman_disagreement"]
        rows.append([f"`{name}`" + (" (default)" if name == default else ""),
                     _f(g["auroc_mean"]["paper"].get(hi)), _f(g["auroc_mean"]["native"].get(hi)),
                     _f(g["auroc_val_mean"].get(hi)),
                     f"{_f(sp['value'])} ({_f(sp['ci_low'])}-{_f(sp['ci_high'])})",
                     _f(g["retention"]["ratio"], 2), _f(g["retention"]["area"]),
                     _f(g["retention"]["clean_rejection"])])
    lines = ["## OOD gates", "",
             f"Mean AUROC at severity {hi} over the {len(r['corruptions'])} test corruptions under "
             f"each protocol, over the validation corruptions (native; saturate left out: no shift of "
             f"a gray face), Spearman of the gate's score with annotator disagreement (clean faces), "
             f"and retention at {r['gates'][default]['retention']['ood_rejection_rate']:.0%} OOD rejection "
             "(native protocol, test corruptions pooled; ratio against total entropy; area under the "
             "retention curve over r = 0.1-0.9; the share of all clean faces the gate also rejects). "
             f"The paper's figure for the mutual-information gate is {PAPER_AUROC} (paper protocol).", ""]
    lines += _table(["gate", "AUROC paper", "AUROC native", "AUROC validation",
                     "Spearman(score, disagreement)", "retention ratio", "area", "clean rejection"], rows)
    val = {n: (g.get("retention_val") or {}).get("ratio") for n, g in gates.items()}
    lines += [f"The default gate, `{default}`, was chosen on validation figures only (the separate "
              "gates, |Spearman| <= 0.25, ranked by validation AUROC); validation retention ratios: "
              + ", ".join(f"`{n}` {_f(v, 2)}" for n, v in val.items()) + ".",
              "", "![retention per gate](gate_retention.png)", ""]
    return lines


def shift_lines(r: dict) -> list[str]:
    """Per protocol: each corruption's grid, negatives, accuracy drop at the top severity, the
    flag, and its AUROC per gate at the top severity."""
    protocols = r.get("protocols")
    if not protocols:
        return []
    hi = str(r["severities"][-1])
    lines = ["## Per-corruption shift (both protocols)", "",
             f"Accuracy drop and AUROC at severity {hi}. *not a shift*: the corruption costs the model "
             "under 2 points of accuracy at every severity, so its AUROC says little about a gate.", ""]
    for p, sec in protocols.items():
        for part in ("corruptions", "validation"):
            table = sec[part]
            if not table:
                continue
            gates = list(next(iter(table.values()))["auroc"])
            rows = [[c, row["grid"], row["negatives"], _f(row["accuracy_drop"].get(hi)),
                     "yes" if row["not_a_shift"] else ""]
                    + [_f(row["auroc"][g].get(hi)) for g in gates]
                    for c, row in table.items()]
            kind = "test" if part == "corruptions" else "validation"
            lines += [f"### {p} protocol, {kind} corruptions", ""]
            lines += _table(["corruption", "grid", "negatives", "accuracy drop", "not a shift"]
                            + [f"AUROC {g}" for g in gates], rows)
    return lines
