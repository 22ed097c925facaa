"""Subcommands of this stage (registered in uar_stream/cli.py): evaluate, calibrate."""
from __future__ import annotations

import sys
from pathlib import Path

from uar_stream.cli.options import number
from uar_stream.errors import ConfigError


def _csv(value: str | None, allowed: tuple, what: str, cast=str) -> tuple:
    if not value:
        return allowed
    try:
        items = tuple(cast(v.strip()) for v in value.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"{what}: {value!r} is not a comma-separated list; allowed: "
                          f"{', '.join(map(str, allowed))}") from None
    bad = [v for v in items if v not in allowed]
    if bad:
        raise ConfigError(f"{what}: {bad[0]!r} is not allowed; allowed: {', '.join(map(str, allowed))}")
    return items


def _default_cache(out: Path) -> Path:
    return out.resolve().parent / "corruption_cache"


def register(sub) -> dict:
    """Add this module's subcommands to ``sub``; return {name: handler(args) -> exit code}."""
    p = sub.add_parser("evaluate", help="dual validation report: aleatoric vs annotator "
                       "disagreement, epistemic vs corruptions, retention, calibration")
    p.add_argument("--data", required=True,
                   help=".npz in the FER+ layout (images [N,48,48] uint8, votes [N,10])")
    p.add_argument("--out", required=True, help="report directory (report.json, report.md, PNGs)")
    p.add_argument("--model", default="engines/default", help="model directory (default: engines/default)")
    p.add_argument("--ldl", help="LDL baseline model directory (one member), e.g. engines/ldl")
    p.add_argument("--limit", type=number(int, 0), default=0, help="use only the first N faces (CI)")
    p.add_argument("--cache", help="corruption/prediction cache (default: OUT/../corruption_cache)")
    p.add_argument("--no-cache", action="store_true", help="build everything afresh, store nothing")
    p.add_argument("--corruptions", help="comma-separated subset of the 15 types (default: all)")
    p.add_argument("--severities", help="comma-separated subset of 1-5 (default: all)")
    p.add_argument("--validation", help="comma-separated subset of the held-out validation corruptions "
                   "(speckle_noise, gaussian_blur, spatter, saturate; default: all; 'none': skip)")
    p.add_argument("--ldl-severities", help="severities the LDL model is run on (default: the "
                   "highest only, which its claims need; 'all' for every one)")
    p.add_argument("--low-severity-sample", type=number(float, 0.01, 1.0), default=0.5,
                   help="share of the faces the 15 test corruptions are scored on below the highest "
                        "severity (a fixed seeded sample; default 0.5; 1: every face). The highest "
                        "severity, the validation corruptions and the clean faces use every face")
    p.add_argument("--workers", type=number(int, 0, 256), default=0,
                   help="worker processes: build the corrupted sets and, on a CPU engine, score them "
                        "(default: one per core)")
    p.add_argument("--bootstrap", type=number(int, 0, 1000000), default=1000,
                   help="bootstrap resamples for the CIs")
    p.add_argument("--seed", type=number(int, 0), default=0)
    p.add_argument("--no-progress", action="store_true")

    c = sub.add_parser("calibrate", help="fit routing thresholds to target rates and write a config")
    c.add_argument("--data", required=True, help="in-distribution faces: FER+-layout .npz, or an .npz "
                   "with only 'images' (your own aligned 48x48 crops; no precision target then)")
    c.add_argument("--out", default="calibrated.yaml", help="config YAML to write (default: calibrated.yaml)")
    c.add_argument("--model", help="model directory (default: the config's model.path)")
    c.add_argument("--config", help="base config (default: built-in defaults)")
    c.add_argument("--id-reject", type=number(float, 0.0, 1.0), default=0.05,
                   help="share of clean faces tau_epistemic may reject as OOD (default 0.05)")
    g = c.add_mutually_exclusive_group()
    g.add_argument("--ambiguous-rate", type=number(float, 0.0, 1.0),
                   help="share of faces to route 'ambiguous' (default: the share of faces whose "
                        "top annotator label has < 50%% of the votes)")
    g.add_argument("--ambiguous-precision", type=number(float, 0.0, 1.0),
                   help="flag as many faces as possible with at least this share of them "
                        "disagreed on by the annotators")
    c.add_argument("--cache", help="prediction cache directory (default: none)")
    c.add_argument("--ood-gate", choices=("mutual_information", "density", "either"),
                   help="the OOD gate to fit (default: the config's routing.ood_gate)")

    d = sub.add_parser("fit-density", help="fit a model directory's feature-density OOD score on "
                       "its training faces (writes density.safetensors, updates the manifest)")
    d.add_argument("--model", default="engines/default", help="model directory (default: engines/default)")
    d.add_argument("--train", required=True, help="the training .npz the members were trained on")
    d.add_argument("--exclude", help="evaluation .npz whose duplicates training dropped (PublicTest)")
    d.add_argument("--limit", type=int, default=0, help="at most N training faces, a seeded sample (0 = all)")
    d.add_argument("--decomposition-temperature", type=float, default=1.0,
                   help="temperature the uncertainties are decomposed at (default 1.0; docs/evaluation.md)")
    d.add_argument("--seed", type=int, default=0)
    return {"evaluate": _evaluate, "calibrate": _calibrate, "fit-density": _fit_density}


def _fit_density(a) -> int:
    from uar_stream.evaluation.fit_density import fit_model_density
    from uar_stream.model.locate import resolve_model_path

    model = resolve_model_path(a.model)
    entry = fit_model_density(model, Path(a.train), Path(a.exclude) if a.exclude else None,
                              a.limit, a.decomposition_temperature, a.seed)
    fit = entry["fit"]
    print(f"density fitted on {fit['faces']} training faces (D={fit['feature_dim']}) in "
          f"{fit['seconds']} s; wrote {model / entry['file']} and {model / 'manifest.json'}")
    return 0


def _evaluate(a) -> int:
    from uar_stream.evaluation.corruptions import CORRUPTIONS, SEVERITIES, VALIDATION
    from uar_stream.evaluation.evaluate import EvalOptions, run
    from uar_stream.evaluation.report import write
    from uar_stream.model.locate import resolve_model_path

    if a.limit < 0:
        raise ConfigError(f"--limit: {a.limit} is out of range; allowed: 0 (all) or more")
    if a.workers < 0:
        raise ConfigError(f"--workers: {a.workers} is out of range; allowed: 0 (one per core) or more")
    out = Path(a.out)
    cache = None if a.no_cache else Path(a.cache) if a.cache else _default_cache(out)
    opts = EvalOptions(
        data=Path(a.data), out=out, model=resolve_model_path(a.model),
        ldl=resolve_model_path(a.ldl) if a.ldl else None, limit=a.limit, cache=cache,
        corruptions=_csv(a.corruptions, CORRUPTIONS, "--corruptions"),
        validation=() if a.validation == "none" else _csv(a.validation, VALIDATION, "--validation"),
        severities=tuple(sorted(_csv(a.severities, SEVERITIES, "--severities", int))),
        ldl_severities=None if not a.ldl_severities else SEVERITIES if a.ldl_severities == "all"
        else tuple(sorted(_csv(a.ldl_severities, SEVERITIES, "--ldl-severities", int))),
        low_severity_sample=a.low_severity_sample, workers=a.workers, seed=a.seed, bootstrap=a.bootstrap,
        progress=not a.no_progress and sys.stderr.isatty())
    report, arrays = run(opts)
    write(report, arrays, out)
    hi = str(max(opts.severities))
    f = lambda x: "n/a" if x is None else f"{x:.3f}"  # noqa: E731
    rho, ret, cs = report["spearman_aleatoric_disagreement"], report["retention"], report["cross_sensitivity"]
    print(f"n {report['n']}: accuracy {f(report['accuracy'])}, ECE {f(report['ece'])}, "
          f"Spearman(aleatoric, disagreement) {f(rho['value'])} ({f(rho['ci_low'])}-{f(rho['ci_high'])})")
    print(f"mean AUROC at severity {hi}: epistemic {f(report['auroc_epistemic_mean'][hi])}, aleatoric "
          f"{f(cs['auroc_aleatoric_mean'][hi])}, total {f(cs['auroc_total_mean'][hi])}")
    print(f"ambiguous faces kept at {ret['ood_rejection_rate']:.0%} OOD rejection: "
          f"UAR {f(ret['uar_retained'])}, "
          f"total entropy {f(ret['single_retained'])} (ratio {f(ret['ratio'])}), max softmax "
          f"{f(ret['max_softmax_retained'])}")
    if "ldl" in report:
        ldl = report["ldl"]
        print(f"LDL: Spearman(entropy, disagreement) {f(ldl['spearman_entropy_disagreement']['value'])}, "
              f"mean AUROC(entropy) at severity {hi} {f(ldl['auroc_entropy_mean'][hi])}, keeps "
              f"{f(ldl['retained_at_matched_rate'])} of ambiguous faces at the matched rate")
    for name, g in report["gates"].items():
        r = g["retention"]
        print(f"gate {name}{' (default)' if name == report['default_gate'] else ''}: mean AUROC at "
              f"severity {hi} paper {f(g['auroc_mean']['paper'].get(hi))}, native "
              f"{f(g['auroc_mean']['native'].get(hi))}, validation {f(g['auroc_val_mean'].get(hi))}; "
              f"Spearman(score, disagreement) {f(g['spearman_disagreement']['value'])}; retention "
              f"ratio {f(r['ratio'])} at {r['ood_rejection_rate']:.0%} (clean rejection "
              f"{f(r['clean_rejection'])}, area {f(r['area'])})")
    print(f"timings (s): {report['timings_s']}")
    print(f"wrote {out / 'report.md'}")
    return 0


def _calibrate(a) -> int:
    from uar_stream.config import load_config
    from uar_stream.evaluation.calibrate import calibrate
    from uar_stream.model.locate import resolve_model_path

    model = resolve_model_path(a.model or load_config(a.config).model.path)
    cfg, th, section = calibrate(Path(a.data), Path(a.out), model, a.config, a.id_reject,
                                 a.ambiguous_rate, a.ambiguous_precision,
                                 Path(a.cache) if a.cache else None, a.ood_gate)
    ach = section["achieved"]
    dens = f", tau_density {cfg.routing.tau_density:.6f}" if th.tau_density is not None else ""
    line = (f"ood_gate {th.ood_gate}: tau_epistemic {cfg.routing.tau_epistemic:.6f}{dens} (rejects "
            f"{ach['id_false_reject']:.4f} of {ach['n']} clean faces), "
            f"tau_aleatoric {cfg.routing.tau_aleatoric:.6f} (routes "
            f"{ach['ambiguous_rate']:.4f} ambiguous")
    if ach.get("ambiguous_precision") is not None:
        line += f"; precision {ach['ambiguous_precision']:.3f}, recall {ach['ambiguous_recall']:.3f}"
    print(line + ")")
    print(f"wrote {a.out}")
    return 0
