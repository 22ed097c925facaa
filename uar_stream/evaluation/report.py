"""Write an evaluation: report.json, faces.npz, the PNG plots and report.md (tables, plots and
a reading of the numbers generated from them)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from uar_stream.errors import SinkError
from uar_stream.evaluation import plots

#: The reference figures (DINOv2 ensemble, in the paper) that the report compares against.
REFERENCE = {
    "spearman_aleatoric_disagreement": (0.66, 0.64, 0.68),
    "auroc_epistemic_mean_highest": 0.699,
    "retention_ratio": 1.8,
}


def write(report: dict, arrays: dict, out: Path) -> dict[str, Path]:
    """Write everything into ``out``; returns {what: path}."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SinkError(f"cannot create output directory {out}: {e.strerror}") from None
    sev = report["severities"]
    files = {
        "aleatoric_vs_disagreement": plots.aleatoric_vs_disagreement(
            arrays["aleatoric"], arrays["disagreement"], report["spearman_aleatoric_disagreement"],
            out / "aleatoric_vs_disagreement.png"),
        "auroc_heatmaps": plots.auroc_heatmaps(
            report["auroc_epistemic"], report["cross_sensitivity"]["auroc_aleatoric"], sev,
            out / "auroc_heatmaps.png"),
        "retention": plots.retention_curves(
            report["retention"]["curve"], report.get("ldl", {}).get("curve"),
            report["retention"]["ood_rejection_rate"], out / "retention.png"),
        "reliability": plots.reliability_diagram(
            report["reliability"]["confidence"], report["reliability"]["accuracy"],
            report["reliability"]["count"], report["ece"], out / "reliability.png"),
    }
    np.savez_compressed(out / "faces.npz", **arrays)
    files["faces"] = out / "faces.npz"
    (out / "report.json").write_text(json.dumps(report, indent=2))
    files["json"] = out / "report.json"
    (out / "report.md").write_text(markdown(report))
    files["markdown"] = out / "report.md"
    return files


def _f(x, nd=3) -> str:
    return "n/a" if x is None else f"{x:.{nd}f}"


def _ci(d: dict) -> str:
    return f"{_f(d['value'])} ({_f(d['ci_low'])}-{_f(d['ci_high'])})"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def reading(r: dict) -> str:
    """One paragraph that says what the numbers show, generated from them."""
    hi = str(max(r["severities"]))
    rho = r["spearman_aleatoric_disagreement"]
    ref_rho = REFERENCE["spearman_aleatoric_disagreement"]
    e_mean = r["auroc_epistemic_mean"][hi]
    cs = r["cross_sensitivity"]
    a_mean, t_mean = cs["auroc_aleatoric_mean"][hi], cs["auroc_total_mean"][hi]
    per = {c: v[hi] for c, v in r["auroc_epistemic"].items()}
    best, worst = max(per, key=per.get), min(per, key=per.get)
    ret = r["retention"]
    parts = []
    if rho["value"] is None:
        cmp_rho = "not comparable with"
    elif rho["ci_low"] is not None and rho["ci_low"] > ref_rho[0]:
        cmp_rho = "above"
    elif rho["ci_high"] is not None and rho["ci_high"] < ref_rho[0]:
        cmp_rho = "below"
    else:
        cmp_rho = "consistent with"
    parts.append(
        f"On {r['n']} faces, aleatoric uncertainty ranks faces by annotator disagreement with "
        f"Spearman {_ci(rho)}, {cmp_rho} the reference {ref_rho[0]:.2f} "
        f"({ref_rho[1]:.2f}-{ref_rho[2]:.2f}).")
    parts.append(
        f"Telling clean from severity-{hi} corrupted faces by epistemic uncertainty gives a mean "
        f"AUROC of {_f(e_mean)} (reference {REFERENCE['auroc_epistemic_mean_highest']:.3f}; 0.5 is "
        f"chance)" + (f", from {_f(per[worst])} for {worst} to {_f(per[best])} for {best}." if len(per) > 1
                      else "."))
    if a_mean is not None and e_mean is not None:
        if a_mean >= e_mean:
            x = (f"The two signals are not cleanly separated: aleatoric uncertainty also rises under "
                 f"corruption, with a mean AUROC of {_f(a_mean)}, as high as or higher than epistemic's")
        elif a_mean > 0.6:
            x = (f"Aleatoric uncertainty also rises under corruption (mean AUROC {_f(a_mean)}), "
                 f"less than epistemic does")
        elif a_mean >= 0.45:
            x = f"Aleatoric uncertainty barely reacts to corruption (mean AUROC {_f(a_mean)})"
        else:
            x = (f"Aleatoric uncertainty falls under corruption (mean AUROC {_f(a_mean)}: corrupted "
                 f"faces look less ambiguous to every member)")
        parts.append(x + f"; total entropy reaches {_f(t_mean)}.")
    se = cs["spearman_epistemic_disagreement"]
    parts.append(
        f"In the other direction, epistemic uncertainty correlates with annotator disagreement at "
        f"Spearman {_ci(se)} (total entropy: {_f(cs['spearman_total_disagreement']['value'])})"
        + (", so part of what the members disagree on is the ambiguity itself." if (se["value"] or 0) > 0.3
           else "."))
    if ret["uar_retained"] is not None and ret["single_retained"] is not None:
        if ret["ratio"] is not None:
            verdict = ("more" if ret["ratio"] > 1.05 else "fewer" if ret["ratio"] < 0.95 else "about as many")
            ratio = f"ratio {ret['ratio']:.2f}x"
        else:
            verdict = "more" if ret["uar_retained"] > 0 else "as few"
            ratio = "ratio undefined: total entropy keeps none"
        parts.append(
            f"Rejecting {ret['ood_rejection_rate']:.0%} of the corrupted faces, UAR keeps "
            f"{ret['uar_retained']:.1%} of the {ret['n_ambiguous']} ambiguous in-distribution faces and "
            f"total-entropy routing {ret['single_retained']:.1%} ({ratio}; "
            f"reference about {REFERENCE['retention_ratio']}x; max softmax "
            f"{_f(ret['max_softmax_retained'])}), so UAR keeps {verdict} ambiguous faces at the same OOD "
            f"rejection.")
    elif ret["n_ambiguous"] == 0:
        parts.append("There are no ambiguous faces (top label < 50% of the votes) here, so retention "
                     "is undefined.")
    if "ldl" in r:
        l = r["ldl"]
        parts.append(
            f"The LDL baseline's entropy reaches Spearman {_ci(l['spearman_entropy_disagreement'])} "
            f"with disagreement and a mean AUROC of {_f(l['auroc_entropy_mean'][hi])} at severity {hi}; "
            f"with that one score it can only route like the single-uncertainty baseline "
            f"(keeps {_f(l['retained_at_matched_rate'], 3)} of ambiguous faces at the matched rate).")
    ctl = r["resampling_control"]["auroc_epistemic"]
    parts.append(
        f"Resampling alone (224 px up, area down, no corruption) gives an epistemic AUROC of "
        f"{_f(ctl)}{' (close to chance, so the pipeline itself is not what is detected)' if ctl is not None and abs(ctl - 0.5) < 0.05 else ' (not chance: part of every corrupted-set AUROC comes from the resampling itself)'}.")
    if r["n"] < 1000:
        parts.append(f"With only {r['n']} faces these figures are rough (see the CIs).")
    return " ".join(parts)


def markdown(r: dict) -> str:
    sev = [str(s) for s in r["severities"]]
    cs = r["cross_sensitivity"]
    ret = r["retention"]
    m = r["model"]
    out = [
        "# uar-stream evaluation",
        "",
        f"Model `{m['path']}` (id {m['id']}, {m['members']} members, {m['backbone']}, "
        f"temperature {m['temperature']}); data `{r['data']['path']}` (sha256 {r['data_sha256'][:16]}..., "
        f"{r['n']} faces after dropping {r['data']['dropped_unknown_or_nf']} unknown/NF-majority rows"
        + (f", first {r['data']['limit']} faces" if r["data"]["limit"] else "") + f"); {r['date']}.",
        "",
        "## Reading",
        "",
        reading(r),
        "",
        "## Headline figures",
        "",
        _table(["metric", "this model", "reference (DINOv2 ensemble)"], [
            ["accuracy (majority label, 8 classes)", _f(r["accuracy"]), ""],
            ["ECE (15 bins)", _f(r["ece"]), ""],
            ["Spearman(aleatoric, disagreement), 95% CI", _ci(r["spearman_aleatoric_disagreement"]),
             "0.66 (0.64-0.68)"],
            [f"mean AUROC(epistemic), severity {sev[-1]}", _f(r["auroc_epistemic_mean"][sev[-1]]), "0.699"],
            [f"ambiguous faces kept at {ret['ood_rejection_rate']:.0%} OOD rejection: UAR / total entropy",
             f"{_f(ret['uar_retained'])} / {_f(ret['single_retained'])} (x{_f(ret['ratio'], 2)})", "about x1.8"],
        ]),
        "",
        "## Cross-sensitivity",
        "",
        "Mean AUROC over corruption types (clean vs corrupted) per severity, for each uncertainty:",
        "",
        _table(["uncertainty"] + [f"sev {s}" for s in sev], [
            ["epistemic"] + [_f(r["auroc_epistemic_mean"][s]) for s in sev],
            ["aleatoric"] + [_f(cs["auroc_aleatoric_mean"][s]) for s in sev],
            ["total"] + [_f(cs["auroc_total_mean"][s]) for s in sev],
        ] + ([["LDL entropy"] + [_f(r["ldl"]["auroc_entropy_mean"][s]) if s in r["ldl"]["auroc_entropy_mean"] else "not run" for s in sev]] if "ldl" in r else [])),
        "",
        "Spearman with annotator disagreement (95% bootstrap CI):",
        "",
        _table(["uncertainty", "Spearman"], [
            ["aleatoric", _ci(r["spearman_aleatoric_disagreement"])],
            ["epistemic", _ci(cs["spearman_epistemic_disagreement"])],
            ["total", _ci(cs["spearman_total_disagreement"])],
        ] + ([["LDL entropy", _ci(r["ldl"]["spearman_entropy_disagreement"])]] if "ldl" in r else [])),
        "",
        f"Resampling control (no corruption, only the 224 px round trip), AUROC: epistemic "
        f"{_f(r['resampling_control']['auroc_epistemic'])}, aleatoric "
        f"{_f(r['resampling_control']['auroc_aleatoric'])}, total {_f(r['resampling_control']['auroc_total'])}.",
        "",
        "## Epistemic AUROC per corruption",
        "",
        _table(["corruption"] + [f"sev {s}" for s in sev],
               [[c] + [_f(v[s]) for s in sev] for c, v in r["auroc_epistemic"].items()]),
        "",
        "![AUROC heatmaps](auroc_heatmaps.png)",
        "",
        "## Aleatoric uncertainty vs annotator disagreement",
        "",
        "![aleatoric vs disagreement](aleatoric_vs_disagreement.png)",
        "",
        "## Retention at matched OOD rejection",
        "",
        f"OOD: {ret['ood']} ({ret['n_ood']} faces). Ambiguous ID: {ret['ambiguous_id']} "
        f"({ret['n_ambiguous']} faces). For each target rate r, each router's threshold is set on the "
        "OOD faces so that it rejects r of them (UAR: tau_epistemic; the single-uncertainty routers: "
        "total entropy or 1 - max softmax); the table counts the ambiguous faces it keeps. The "
        "reference's \"matched OOD rejection rate\" is not tied to a particular r; this report's headline "
        f"is r = {ret['ood_rejection_rate']}, and the curve shows every r.",
        "",
        _table(["OOD rejected", "UAR kept", "total entropy kept", "max softmax kept"]
               + (["LDL entropy kept"] if "ldl" in r else []),
               [[f"{row['rate']:.2f}", _f(row["uar"]), _f(row["total_entropy"]), _f(row["max_softmax"])]
                + ([_f(lr["entropy"])] if "ldl" in r else [])
                for row, lr in zip(ret["curve"], r.get("ldl", {}).get("curve", ret["curve"]))
                if abs(row["rate"] * 10 - round(row["rate"] * 10)) < 1e-6]),
        "",
        "![retention](retention.png)",
        "",
        "## Calibration",
        "",
        "![reliability](reliability.png)",
        "",
        "## Notes",
        "",
        "- Corruptions: ImageNet-C definitions (imagecorruptions-imaug) applied at 224x224 to the "
        "bicubically upscaled face, converted to gray, area-downscaled back to 48x48. Downscaling "
        "averages about 22 source pixels per face pixel, which attenuates pixel noise (gaussian, shot, "
        "impulse) far more than blur or weather corruptions. Shot noise draws its Poisson values "
        "by CDF inversion (same distribution as the library, other random numbers).",
        f"- Timings (s): {', '.join(f'{k} {v}' for k, v in r['timings_s'].items() if v is not None)}.",
    ]
    return "\n".join(out) + "\n"
