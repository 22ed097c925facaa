"""Write an evaluation: report.json, faces.npz, the PNG plots and report.md (tables, plots and
a reading of the numbers generated from them)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from uar_stream.errors import SinkError
from uar_stream.evaluation import plots, report_separation

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
    if report.get("gates"):
        files["gate_retention"] = plots.gate_retention_curves(report["gates"], report["default_gate"],
                                                              out / "gate_retention.png")
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
    parts = [_aleatoric_sentence(r), _epistemic_sentence(r, hi), _cross_sentence(r, hi),
             _reverse_sentence(r["cross_sensitivity"]), _retention_sentence(r["retention"]),
             _ldl_sentence(r, hi), _control_sentence(r["resampling_control"]["auroc_epistemic"])]
    if r["n"] < 1000:
        parts.append(f"With only {r['n']} faces these figures are rough (see the CIs).")
    return " ".join(p for p in parts if p)


def _aleatoric_sentence(r: dict) -> str:
    rho = r["spearman_aleatoric_disagreement"]
    ref = REFERENCE["spearman_aleatoric_disagreement"]
    if rho["value"] is None:
        cmp_rho = "not comparable with"
    elif rho["ci_low"] is not None and rho["ci_low"] > ref[0]:
        cmp_rho = "above"
    elif rho["ci_high"] is not None and rho["ci_high"] < ref[0]:
        cmp_rho = "below"
    else:
        cmp_rho = "consistent with"
    return (f"On {r['n']} faces, aleatoric uncertainty ranks faces by annotator disagreement with "
            f"Spearman {_ci(rho)}, {cmp_rho} the reference {ref[0]:.2f} ({ref[1]:.2f}-{ref[2]:.2f}).")


def _epistemic_sentence(r: dict, hi: str) -> str:
    per = {c: v[hi] for c, v in r["auroc_epistemic"].items()}
    best, worst = max(per, key=per.get), min(per, key=per.get)
    spread = f", from {_f(per[worst])} for {worst} to {_f(per[best])} for {best}." if len(per) > 1 else "."
    return (f"Telling clean from severity-{hi} corrupted faces by epistemic uncertainty gives a mean "
            f"AUROC of {_f(r['auroc_epistemic_mean'][hi])} (reference "
            f"{REFERENCE['auroc_epistemic_mean_highest']:.3f}; 0.5 is chance)" + spread)


def _cross_sentence(r: dict, hi: str) -> str | None:
    cs = r["cross_sensitivity"]
    e_mean = r["auroc_epistemic_mean"][hi]
    a_mean, t_mean = cs["auroc_aleatoric_mean"][hi], cs["auroc_total_mean"][hi]
    if a_mean is None or e_mean is None:
        return None
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
    return x + f"; total entropy reaches {_f(t_mean)}."


def _reverse_sentence(cs: dict) -> str:
    se = cs["spearman_epistemic_disagreement"]
    tail = (", so part of what the members disagree on is the ambiguity itself."
            if (se["value"] or 0) > 0.3 else ".")
    return (f"In the other direction, epistemic uncertainty correlates with annotator disagreement at "
            f"Spearman {_ci(se)} (total entropy: {_f(cs['spearman_total_disagreement']['value'])})" + tail)


def _retention_sentence(ret: dict) -> str | None:
    if ret["uar_retained"] is None or ret["single_retained"] is None:
        if ret["n_ambiguous"] == 0:
            return ("There are no ambiguous faces (top label < 50% of the votes) here, so retention "
                    "is undefined.")
        return None
    if ret["ratio"] is not None:
        verdict = "more" if ret["ratio"] > 1.05 else "fewer" if ret["ratio"] < 0.95 else "about as many"
        ratio = f"ratio {ret['ratio']:.2f}x"
    else:
        verdict = "more" if ret["uar_retained"] > 0 else "as few"
        ratio = "ratio undefined: total entropy keeps none"
    return (f"Rejecting {ret['ood_rejection_rate']:.0%} of the corrupted faces, UAR keeps "
            f"{ret['uar_retained']:.1%} of the {ret['n_ambiguous']} ambiguous in-distribution faces and "
            f"total-entropy routing {ret['single_retained']:.1%} ({ratio}; "
            f"reference about {REFERENCE['retention_ratio']}x; max softmax "
            f"{_f(ret['max_softmax_retained'])}), so UAR keeps {verdict} ambiguous faces at the same OOD "
            f"rejection.")


def _ldl_sentence(r: dict, hi: str) -> str | None:
    if "ldl" not in r:
        return None
    ldl = r["ldl"]
    return (f"The LDL baseline's entropy reaches Spearman {_ci(ldl['spearman_entropy_disagreement'])} "
            f"with disagreement and a mean AUROC of {_f(ldl['auroc_entropy_mean'][hi])} at severity {hi}; "
            f"with that one score it can only route like the single-uncertainty baseline "
            f"(keeps {_f(ldl['retained_at_matched_rate'], 3)} of ambiguous faces at the matched rate).")


def _control_sentence(ctl: float | None) -> str:
    if ctl is not None and abs(ctl - 0.5) < 0.05:
        why = " (close to chance, so the pipeline itself is not what is detected)"
    else:
        why = " (not chance: part of every corrupted-set AUROC comes from the resampling itself)"
    return (f"Resampling alone (224 px up, area down, no corruption) gives an epistemic AUROC of "
            f"{_f(ctl)}{why}.")


def markdown(r: dict) -> str:
    """report.md: the reading, the headline table, cross-sensitivity, per-corruption AUROC,
    retention and calibration, with the plots ``write`` saves beside it."""
    sections = (_md_header, _md_headline, report_separation.temperature_lines,
                report_separation.gate_lines, _md_cross_sensitivity, _md_per_corruption, _md_retention,
                report_separation.shift_lines, _md_notes)
    return "\n".join(line for section in sections for line in section(r)) + "\n"


def _md_header(r: dict) -> list[str]:
    m, data = r["model"], r["data"]
    limit = f", first {data['limit']} faces" if data["limit"] else ""
    return [
        "# uar-stream evaluation",
        "",
        f"Model `{m['path']}` (id {m['id']}, {m['members']} members, {m['backbone']}, "
        f"temperature {m['temperature']}); data `{data['path']}` (sha256 {r['data_sha256'][:16]}..., "
        f"{r['n']} faces after dropping {data['dropped_unknown_or_nf']} unknown/NF-majority rows"
        f"{limit}); {r['date']}.",
        "",
        "## Reading",
        "",
        reading(r),
        "",
    ]


def _md_headline(r: dict) -> list[str]:
    hi = str(r["severities"][-1])
    ret = r["retention"]
    return [
        "## Headline figures",
        "",
        _table(["metric", "this model", "reference (DINOv2 ensemble)"], [
            ["accuracy (majority label, 8 classes)", _f(r["accuracy"]), ""],
            ["ECE (15 bins)", _f(r["ece"]), ""],
            ["Spearman(aleatoric, disagreement), 95% CI", _ci(r["spearman_aleatoric_disagreement"]),
             "0.66 (0.64-0.68)"],
            [f"mean AUROC(epistemic), severity {hi}", _f(r["auroc_epistemic_mean"][hi]), "0.699"],
            [f"ambiguous faces kept at {ret['ood_rejection_rate']:.0%} OOD rejection: UAR / total entropy",
             f"{_f(ret['uar_retained'])} / {_f(ret['single_retained'])} (x{_f(ret['ratio'], 2)})",
             "about x1.8"],
        ]),
        "",
    ]


def _md_cross_sensitivity(r: dict) -> list[str]:
    sev = [str(s) for s in r["severities"]]
    cs, ctl = r["cross_sensitivity"], r["resampling_control"]
    auroc_rows = [
        ["epistemic"] + [_f(r["auroc_epistemic_mean"][s]) for s in sev],
        ["aleatoric"] + [_f(cs["auroc_aleatoric_mean"][s]) for s in sev],
        ["total"] + [_f(cs["auroc_total_mean"][s]) for s in sev],
    ]
    spearman_rows = [
        ["aleatoric", _ci(r["spearman_aleatoric_disagreement"])],
        ["epistemic", _ci(cs["spearman_epistemic_disagreement"])],
        ["total", _ci(cs["spearman_total_disagreement"])],
    ]
    if "ldl" in r:
        ldl_mean = r["ldl"]["auroc_entropy_mean"]
        auroc_rows.append(["LDL entropy"] + [_f(ldl_mean[s]) if s in ldl_mean else "not run" for s in sev])
        spearman_rows.append(["LDL entropy", _ci(r["ldl"]["spearman_entropy_disagreement"])])
    return [
        "## Cross-sensitivity",
        "",
        "Mean AUROC over corruption types (clean vs corrupted) per severity, for each uncertainty"
        f"{_sample_note(r)}:",
        "",
        _table(["uncertainty"] + [f"sev {s}" for s in sev], auroc_rows),
        "",
        "Spearman with annotator disagreement (95% bootstrap CI):",
        "",
        _table(["uncertainty", "Spearman"], spearman_rows),
        "",
        f"Resampling control (no corruption, only the 224 px round trip), AUROC: epistemic "
        f"{_f(ctl['auroc_epistemic'])}, aleatoric {_f(ctl['auroc_aleatoric'])}, "
        f"total {_f(ctl['auroc_total'])}.",
        "",
    ]


def _sample_note(r: dict) -> str:
    """Which faces the lower severities were scored on, when not all of them."""
    smp = r.get("low_severity_sample") or {}
    if not smp or smp["faces"] >= smp["of"]:
        return ""
    return (f" (severities below {r['severities'][-1]}: corrupted versions of a fixed sample of "
            f"{smp['faces']} of the {smp['of']} faces, against all clean faces)")


def _md_per_corruption(r: dict) -> list[str]:
    sev = [str(s) for s in r["severities"]]
    return [
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
    ]


def _md_retention(r: dict) -> list[str]:
    ret = r["retention"]
    has_ldl = "ldl" in r
    ldl_curve = r["ldl"]["curve"] if has_ldl else ret["curve"]  # same rates as UAR's
    rows = [[f"{row['rate']:.2f}", _f(row["uar"]), _f(row["total_entropy"]), _f(row["max_softmax"])]
            + ([_f(lr["entropy"])] if has_ldl else [])
            for row, lr in zip(ret["curve"], ldl_curve, strict=True)
            if abs(row["rate"] * 10 - round(row["rate"] * 10)) < 1e-6]  # the table: every 0.1
    return [
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
               + (["LDL entropy kept"] if has_ldl else []), rows),
        "",
        "![retention](retention.png)",
        "",
        "## Calibration",
        "",
        "![reliability](reliability.png)",
        "",
    ]


def _md_notes(r: dict) -> list[str]:
    return [
        "## Notes",
        "",
        "- Corruptions: ImageNet-C definitions (imagecorruptions-imaug) applied at 224x224 to the "
        "bicubically upscaled face, converted to gray, area-downscaled back to 48x48. Downscaling "
        "averages about 22 source pixels per face pixel, which attenuates pixel noise (gaussian, shot, "
        "impulse) far more than blur or weather corruptions. Shot noise draws its Poisson values "
        "by CDF inversion (same distribution as the library, other random numbers).",
        f"- Timings (s): {', '.join(f'{k} {v}' for k, v in r['timings_s'].items() if v is not None)}.",
    ]
