"""`uar-stream evaluate` and `uar-stream calibrate` end to end on real FER+ faces.

The models are small random-weight ensembles built here (the shipped model may not exist in
CI); these tests check the plumbing and the report's content, not the model's quality.
"""
import itertools
import json

import numpy as np
import pytest
import torch
import yaml

from uar_stream.cli.main import main
from uar_stream.config import load_config
from uar_stream.evaluation.evaluate import ambiguous_mask
from uar_stream.evaluation.predict import Predictor
from uar_stream.flow import Route
from uar_stream.labels import emotion_rows
from uar_stream.model.fused_cnn import CnnArch, FusedCnn
from uar_stream.model.store import MANIFEST, Manifest, file_sha256, write_member
from uar_stream.pipeline.routing import Router

SMALL = CnnArch(stem=8, widths=(8, 16, 16), blocks=(1, 1, 1), dropout=0.0)


def _model(path, members, seed):
    torch.manual_seed(seed)
    path.mkdir(parents=True)
    files, hashes = [], {}
    for m in range(members):
        net = FusedCnn(1, 8, SMALL)
        for mod in net.modules():  # give BN some non-trivial statistics so members differ more
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_var.uniform_(0.5, 2.0)
        name = f"member_{m:02d}.safetensors"
        write_member(path / name, {k: v for k, v in net.state_dict().items()
                                   if not k.endswith("num_batches_tracked")}, fp16=False)
        files.append(name)
        hashes[name] = file_sha256(path / name)
    man = Manifest(members=members, files=files, arch=SMALL.to_dict(), sha256=hashes,
                   temperature=0.5)
    (path / MANIFEST).write_text(man.to_json())
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory, ferplus):
    """A 3-member ensemble with a feature density (fit-density on 200 training faces) and a
    one-member LDL stand-in without one."""
    from uar_stream.evaluation.fit_density import fit_model_density

    root = tmp_path_factory.mktemp("models")
    ens = _model(root / "ens", 3, 0)
    fit_model_density(ens, ferplus / "train.npz", ferplus / "publictest.npz", limit=200)
    return ens, _model(root / "ldl", 1, 7)


REPORT_KEYS = {"n", "accuracy", "ece", "spearman_aleatoric_disagreement", "auroc_epistemic",
               "auroc_epistemic_mean", "cross_sensitivity", "retention", "ldl", "model",
               "data_sha256", "date", "resampling_control", "timings_s"}
PNGS = ("aleatoric_vs_disagreement.png", "auroc_heatmaps.png", "retention.png", "reliability.png")


def _check_protocol_v2(r):
    """The issue's report keys: protocols, validation, a section per gate, the default gate."""
    sev = {str(s) for s in range(1, 6)}
    assert set(r["gates"]) == {"mutual_information", "density", "either"}
    assert r["default_gate"] in r["gates"]
    for g in r["gates"].values():
        assert set(g["auroc_mean"]) == {"paper", "native"}
        assert set(g["auroc_mean"]["paper"]) == set(g["auroc_mean"]["native"]) == sev
        assert set(g["auroc_val_mean"]) == sev
        assert set(g["spearman_disagreement"]) == {"value", "ci_low", "ci_high"}
        ret = g["retention"]
        assert {"ratio", "area", "clean_rejection", "curve"} <= set(ret)
        assert [row["rate"] for row in ret["curve"]] == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
        # a stricter gate (higher OOD rejection) rejects at least as many clean faces
        rej = [row["clean_rejection"] for row in ret["curve"]]
        assert all(b >= a - 1e-9 for a, b in itertools.pairwise(rej))
    native = r["protocols"]["native"]
    assert native["corruptions"]["gaussian_noise"]["grid"] == "48"
    assert native["corruptions"]["fog"]["negatives"] == "resampled"
    assert r["protocols"]["paper"]["corruptions"]["gaussian_noise"]["grid"] == "224"
    assert set(native["validation"]) == {"gaussian_blur"}
    assert r["decomposition_temperature"]["used"] == 1.0


def test_evaluate_limit_writes_full_report_and_reruns_from_cache(ferplus, models, tmp_path, capsys):
    ens, ldl = models
    out = tmp_path / "run" / "report"
    args = ["evaluate", "--data", str(ferplus / "publictest.npz"), "--out", str(out),
            "--model", str(ens), "--ldl", str(ldl), "--limit", "60", "--workers", "1",
            "--corruptions", "gaussian_noise,fog", "--validation", "gaussian_blur", "--bootstrap", "100",
            "--no-progress"]
    assert main(args) == 0
    r = json.loads((out / "report.json").read_text())
    assert REPORT_KEYS <= set(r)
    assert r["n"] == 60 and r["data_sha256"] == r["data"]["sha256"] and len(r["data_sha256"]) == 64
    for key in ("value", "ci_low", "ci_high"):
        assert -1 <= r["spearman_aleatoric_disagreement"][key] <= 1
    sev = [str(s) for s in range(1, 6)]
    assert set(r["auroc_epistemic"]) == {"gaussian_noise", "fog"}
    assert all(set(v) == set(sev) for v in r["auroc_epistemic"].values())
    assert set(r["auroc_epistemic_mean"]) == set(sev)
    cs = r["cross_sensitivity"]
    assert {"auroc_aleatoric_mean", "auroc_total_mean", "spearman_epistemic_disagreement",
            "spearman_total_disagreement"} <= set(cs)
    assert all(0 <= v <= 1 for v in cs["auroc_aleatoric_mean"].values())
    ret = r["retention"]
    assert {"ood_rejection_rate", "uar_retained", "single_retained", "ratio", "curve"} <= set(ret)
    # raising the OOD rejection rate can only lower what each router keeps
    for router in ("uar", "total_entropy", "max_softmax"):
        kept = [row[router] for row in ret["curve"]]
        assert all(b <= a + 1e-9 for a, b in itertools.pairwise(kept)), router
    # the LDL model has one member: no epistemic part, its entropy is its only uncertainty
    assert {"spearman_entropy_disagreement", "auroc_entropy_mean"} <= set(r["ldl"])
    # by default the LDL model runs only at the highest severity (all its claims need)
    assert r["ldl"]["severities"] == [5] and set(r["ldl"]["auroc_entropy_mean"]) == {"5"}
    for png in PNGS:
        assert (out / png).stat().st_size > 5000
    _check_protocol_v2(r)
    md = (out / "report.md").read_text()
    assert "## Reading" in md and "auroc_heatmaps.png" in md
    assert "## OOD gates" in md and "## Decomposition temperature" in md
    assert (out / "gate_retention.png").stat().st_size > 5000
    assert "Spearman" in capsys.readouterr().out

    # Rerun: everything comes from the cache (next to OUT) and gives the same figures.
    assert main(args) == 0
    r2 = json.loads((out / "report.json").read_text())
    # 4 sets per severity: gaussian_noise at 224 and on the 48 grid, fog, gaussian_blur; + resampled
    assert r2["timings_s"]["sets_from_prediction_cache"] == r2["timings_s"]["sets_total"] == 21
    for k in ("spearman_aleatoric_disagreement", "auroc_epistemic", "retention", "ldl", "gates"):
        assert r2[k] == r[k]
    assert (tmp_path / "run" / "corruption_cache").is_dir()


def test_workers_score_their_sets_with_the_same_figures(ferplus, models, tmp_path):
    ens, ldl = models
    reports = {}
    for workers in ("1", "2"):
        out = tmp_path / f"w{workers}" / "report"
        assert main(["evaluate", "--data", str(ferplus / "publictest.npz"), "--out", str(out),
                     "--model", str(ens), "--ldl", str(ldl), "--limit", "40", "--workers", workers,
                     "--corruptions", "gaussian_noise,frost", "--validation", "gaussian_blur",
                     "--bootstrap", "50",
                     "--no-progress"]) == 0
        reports[workers] = json.loads((out / "report.json").read_text())
    t1, t2 = reports["1"]["timings_s"], reports["2"]["timings_s"]
    assert t1["inference_in"] == "main process" and t2["inference_in"] == "workers"
    assert t2["corrupted_inference_cpu_s"] > 0 and t2["corruption_cpu_s"] > 0
    for k in ("accuracy", "spearman_aleatoric_disagreement", "auroc_epistemic", "cross_sensitivity",
              "retention", "resampling_control", "gates", "protocols"):
        assert reports["2"][k] == reports["1"][k], k
    assert reports["2"]["ldl"]["auroc_entropy"] == reports["1"]["ldl"]["auroc_entropy"]


GATE = "density"  # the default gate (the test ensemble has a density file)


def test_low_severities_are_scored_on_a_sample_of_the_full_sets_faces(ferplus, models, tmp_path):
    from uar_stream.evaluation.evaluate import sample_rows
    from uar_stream.evaluation.sets import set_key
    ens, _ = models
    cache, reports = tmp_path / "cache", {}
    for frac in ("1", "0.5"):
        out = tmp_path / frac / "report"
        assert main(["evaluate", "--data", str(ferplus / "publictest.npz"), "--out", str(out),
                     "--model", str(ens), "--limit", "40", "--workers", "1", "--cache", str(cache),
                     "--corruptions", "gaussian_noise,frost", "--validation", "gaussian_blur,saturate",
                     "--bootstrap", "50", "--low-severity-sample", frac, "--no-progress"]) == 0
        reports[frac] = json.loads((out / "report.json").read_text())
    full, half = reports["1"], reports["0.5"]
    assert half["low_severity_sample"]["faces"] == 20 and full["low_severity_sample"]["faces"] == 40
    # the top severity, the validation sets and the clean faces use every face: same figures
    for p in ("paper", "native"):
        for c, row in full["protocols"][p]["corruptions"].items():
            assert half["protocols"][p]["corruptions"][c]["auroc"][GATE]["5"] == row["auroc"][GATE]["5"]
        assert half["protocols"][p]["validation"] == full["protocols"][p]["validation"]
    assert half["retention"] == full["retention"]
    # below it, the sampled set's scores are the full set's rows (same faces, same draws)
    rows = sample_rows(40, 0.5, 0)
    with np.load(ferplus / "publictest.npz") as d:
        images = d["images"][np.flatnonzero(emotion_rows(d["votes"]))[:40]]
    preds = next((cache / "predictions").iterdir()) / set_key(images, 0)
    for stem in ("gaussian_noise_s2", "frost_s4", "gaussian_noise@48_s1"):
        with np.load(preds / f"{stem}.npz") as a, np.load(preds / f"{stem}_r20.npz") as b:
            np.testing.assert_allclose(b["epistemic"], a["epistemic"][rows], atol=1e-6)
    # saturate 1-3 share the round trip's scores (they are the same faces): not built, not scored
    assert half["timings_s"]["sets_same_as_resampling"] == 3
    assert not (preds / "saturate_s2.npz").exists() and (preds / "saturate_s5.npz").exists()
    sat = half["protocols"]["native"]["validation"]["saturate"]["auroc"][GATE]
    assert sat["1"] == sat["2"] == sat["3"] == 0.5  # resampled faces against themselves


@pytest.mark.parametrize("option, value, named", [
    ("--corruptions", "rain", ("rain", "gaussian_noise")),  # the bad value and the allowed ones
    ("--workers", "-1", ("--workers", "-1", "0 to 256")),
])
def test_evaluate_rejects_a_bad_option_in_one_line(ferplus, models, tmp_path, capsys,
                                                   option, value, named):
    code = main(["evaluate", "--data", str(ferplus / "publictest.npz"), "--out", str(tmp_path),
                 "--model", str(models[0]), option, value])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and all(word in err for word in named)


@pytest.fixture(scope="module")
def small_data(ferplus, tmp_path_factory):
    with np.load(ferplus / "publictest.npz") as d:
        images, votes = d["images"][:400], d["votes"][:400]
    path = tmp_path_factory.mktemp("data") / "faces.npz"
    np.savez(path, images=images, votes=votes)
    return path, images, votes


def test_calibrate_thresholds_reproduce_targets_on_the_fitted_data(small_data, models, tmp_path, capsys):
    path, images, votes = small_data
    out = tmp_path / "calibrated.yaml"
    assert main(["calibrate", "--data", str(path), "--out", str(out), "--model", str(models[0]),
                 "--id-reject", "0.1", "--ambiguous-rate", "0.2"]) == 0
    assert "tau_epistemic" in capsys.readouterr().out
    doc = yaml.safe_load(out.read_text())
    cal = doc["calibration"]
    gate = load_config().routing.ood_gate  # the default gate, fitted as the router runs it
    assert cal["targets"] == {"id_false_reject": 0.1, "ambiguous_rate": 0.2, "ood_gate": gate}
    assert set(doc) - {"calibration"} == set(load_config().to_dict())  # a full config
    cfg = load_config(out)  # loads: the calibration section is ignored
    assert cfg.routing.ood_gate == gate
    keep = emotion_rows(votes)
    assert cal["faces_used"] == keep.sum()
    s = Predictor(models[0], None).predict(images[keep])
    router = Router(cfg.routing.tau_epistemic, cfg.routing.tau_aleatoric, gate, cfg.routing.tau_density)
    routes = router.route_batch(s.aleatoric, s.epistemic, s.density)
    n = len(routes)
    ood = sum(r is Route.OUT_OF_DISTRIBUTION for r in routes) / n
    amb = sum(r is Route.AMBIGUOUS for r in routes) / n
    # rounding tau to 6 decimals in the YAML may move a face or two across the threshold
    assert abs(ood - 0.1) <= 2 / n and abs(amb - 0.2) <= 2 / n
    assert abs(cal["achieved"]["id_false_reject"] - ood) <= 2 / n
    assert cal["data_sha256"] and cal["model_id"]
    assert 0 <= cal["achieved"]["ambiguous_precision"] <= 1
    assert cal["achieved"]["disagreed_share"] == pytest.approx(ambiguous_mask(votes[keep]).mean(), abs=1e-4)


def test_calibrate_on_own_faces_without_votes(small_data, models, tmp_path, capsys):
    _, images, _ = small_data
    own = tmp_path / "own.npz"
    np.savez(own, images=images[:200])
    out = tmp_path / "own.yaml"
    assert main(["calibrate", "--data", str(own), "--out", str(out), "--model", str(models[0]),
                 "--ambiguous-rate", "0.1"]) == 0
    assert load_config(out).routing.tau_epistemic >= 0
    code = main(["calibrate", "--data", str(own), "--out", str(out), "--model", str(models[0]),
                 "--ambiguous-precision", "0.5"])
    assert code == 2 and "votes" in capsys.readouterr().err


def test_calibrate_with_a_flip_tta_config_fits_the_flip_tta_outputs(small_data, models, tmp_path):
    """engine.flip_tta in the base config: the thresholds are quantiles of the TTA engine's
    epistemic scores (not the plain engine's), and the section records it."""
    path, images, votes = small_data
    base = tmp_path / "tta.yaml"
    base.write_text("engine:\n  flip_tta: true\nrouting:\n  ood_gate: mutual_information\n")
    outs = {}
    for name, cfg in (("tta", str(base)), ("plain", None)):
        outs[name] = tmp_path / f"{name}.yaml"
        args = ["calibrate", "--data", str(path), "--out", str(outs[name]), "--model", str(models[0]),
                "--id-reject", "0.1", "--ood-gate", "mutual_information"]
        assert main(args + (["--config", cfg] if cfg else [])) == 0
    tta, plain = (yaml.safe_load(outs[k].read_text()) for k in ("tta", "plain"))
    assert tta["calibration"]["flip_tta"] is True and plain["calibration"]["flip_tta"] is False
    assert tta["engine"]["flip_tta"] is True
    keep = emotion_rows(votes)
    s = Predictor(models[0], None, flip_tta=True).predict(images[keep])
    tau = tta["routing"]["tau_epistemic"]
    assert abs((s.epistemic > tau).mean() - 0.1) <= 2 / keep.sum()
    assert tau != plain["routing"]["tau_epistemic"]
