"""Horizontal-flip test-time augmentation (``engine.flip_tta``) against the plain engine, side by
side in one run, on FER+ PublicTest.

    python tools/bench_flip_tta.py [--model engines/default] [--precision auto] [--rounds 15]
                                   [--ood-faces 1000] [--json out.json]

Both engines are the same backend and precision (``engine.*`` of the default config unless
given: int8 on the CPU for the shipped model). Timing is interleaved (the two engines alternate,
the order flipping every round): median milliseconds per call at batch 1 and 16. Quality on every
PublicTest face: majority-label accuracy, ECE and Spearman(aleatoric, vote entropy) on the faces
with an emotion majority; routes under the default thresholds (``routing.*`` of
``configs/default.yaml``) and the share of faces routed the same. The OOD signals: AUROC of the
epistemic score and of the density score, clean against corrupted, on the first ``--ood-faces``
PublicTest faces for each VALIDATION corruption (severity 5; never the 15 test corruptions),
and their means.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

from uar_stream.backends import create_engine
from uar_stream.config import load_config
from uar_stream.evaluation.corruptions import corrupt_faces
from uar_stream.evaluation.protocols import VALIDATION_MEAN
from uar_stream.labels import emotion_rows, majority_label, vote_entropy
from uar_stream.metrics import accuracy, auroc, ece, spearman
from uar_stream.model.preprocess import prepare_batch
from uar_stream.model.store import read_manifest
from uar_stream.pipeline.routing import router_for

ROOT = Path(__file__).resolve().parents[1]
PUBLICTEST = ROOT.parent / "shared" / "data" / "ferplus" / "publictest.npz"
VARIANTS = ("plain", "flip_tta")


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / "engines" / "default"))
    ap.add_argument("--data", default=str(PUBLICTEST), help="FER+-layout .npz (images, votes)")
    ap.add_argument("--backend", help="engine.backend (default: the default config's)")
    ap.add_argument("--precision", help="engine.precision (default: the default config's)")
    ap.add_argument("--threads", type=int, help="engine.threads (default: the default config's)")
    ap.add_argument("--rounds", type=int, default=15, help="interleaved timing rounds")
    ap.add_argument("--calls", type=int, default=10, help="timed calls per engine, batch and round")
    ap.add_argument("--ood-faces", type=int, default=1000, help="faces per validation corruption (0: skip)")
    ap.add_argument("--json", help="also write the numbers here")
    return ap.parse_args()


def _timings(engines: dict, faces: np.ndarray, rounds: int, calls: int) -> dict:
    """{variant: {batch: median ms}}, the two engines alternating call blocks."""
    times = {v: {1: [], 16: []} for v in engines}
    for v in engines:  # warm-up: first calls allocate
        for b in (1, 16):
            engines[v].infer(faces[:b])
    for r in range(rounds):
        order = VARIANTS if r % 2 == 0 else VARIANTS[::-1]
        for b in (1, 16):
            for v in order:
                x = faces[b * r % 64:][:b]
                for _ in range(calls):
                    t = time.perf_counter()
                    engines[v].infer(x)
                    times[v][b].append((time.perf_counter() - t) * 1e3)
    return {v: {b: statistics.median(t) for b, t in tb.items()} for v, tb in times.items()}


def _routes(router, out) -> np.ndarray:
    return np.array([r.value for r in router.route_batch(out.aleatoric, out.epistemic, out.density)])


def _quality(out, votes: np.ndarray, routes: np.ndarray) -> dict:
    em, labels = emotion_rows(votes), majority_label(votes)
    p = out.mean_probs[em]
    return {"accuracy": accuracy(p, labels[em]), "ece": ece(p, labels[em]),
            "spearman_aleatoric_vote_entropy": spearman(out.aleatoric[em], vote_entropy(votes)[em]),
            "routes": {r: float((routes == r).mean())
                       for r in ("confident", "ambiguous", "out_of_distribution")}}


def _ood(engines: dict, images: np.ndarray, n: int) -> dict:
    """{variant: {signal: {corruption: AUROC, 'mean': ...}}} on the validation corruptions."""
    clean = images[:n]
    sets = {c: prepare_batch(corrupt_faces(clean, c, 5)) for c in VALIDATION_MEAN}
    out: dict = {}
    for v, eng in engines.items():
        base = eng.infer(prepare_batch(clean))
        res: dict = {"epistemic": {}, "density": {}}
        for c, faces in sets.items():
            o = eng.infer(faces)
            res["epistemic"][c] = auroc(base.epistemic, o.epistemic)
            if o.density is not None:
                res["density"][c] = auroc(base.density, o.density)
        for signal in list(res):
            if res[signal]:
                res[signal]["mean"] = float(np.mean(list(res[signal].values())))
            else:
                del res[signal]
        out[v] = res
    return out


def measure(a: argparse.Namespace) -> dict:
    """Every number of the report (the JSON)."""
    with np.load(a.data, allow_pickle=False) as d:
        images, votes = d["images"], d["votes"]
    faces = prepare_batch(images)
    e = load_config().engine
    kw = {"backend": a.backend or e.backend, "device": e.device, "precision": a.precision or e.precision,
          "max_batch": e.max_batch, "threads": e.threads if a.threads is None else a.threads}
    engines = {v: create_engine(a.model, **kw, flip_tta=(v == "flip_tta")) for v in VARIANTS}
    router = router_for(load_config().routing, read_manifest(a.model).density is not None, a.model)
    outs = {v: eng.infer(faces) for v, eng in engines.items()}
    routes = {v: _routes(router, o) for v, o in outs.items()}
    speed = _timings(engines, faces, a.rounds, a.calls)
    return {"model": str(a.model), "data": str(a.data), "faces": len(faces), "engine": engines["plain"].name,
            "ms_per_call": speed, "cost": {b: speed["flip_tta"][b] / speed["plain"][b] for b in (1, 16)},
            "quality": {v: _quality(outs[v], votes, routes[v]) for v in VARIANTS},
            "route_agreement": float((routes["plain"] == routes["flip_tta"]).mean()),
            "ood_auroc": _ood(engines, images, a.ood_faces) if a.ood_faces else {}}


def _table(r: dict) -> str:
    q, s = r["quality"], r["ms_per_call"]
    rows = [(f"ms per call, batch {b}", f"{s['plain'][b]:.2f}", f"{s['flip_tta'][b]:.2f}",
             f"{r['cost'][b]:.2f}x") for b in (1, 16)]
    for key, label in (("accuracy", "accuracy (majority label)"), ("ece", "ECE (15 bins)"),
                       ("spearman_aleatoric_vote_entropy", "Spearman(aleatoric, vote entropy)")):
        rows.append((label, f"{q['plain'][key]:.4f}", f"{q['flip_tta'][key]:.4f}",
                     f"{q['flip_tta'][key] - q['plain'][key]:+.4f}"))
    for route in q["plain"]["routes"]:
        rows.append((f"share routed {route}", f"{q['plain']['routes'][route]:.4f}",
                     f"{q['flip_tta']['routes'][route]:.4f}", ""))
    for signal in r["ood_auroc"].get("plain", {}):
        p, f = r["ood_auroc"]["plain"][signal]["mean"], r["ood_auroc"]["flip_tta"][signal]["mean"]
        rows.append((f"{signal} AUROC, validation mean", f"{p:.4f}", f"{f:.4f}", f"{f - p:+.4f}"))
    lines = [f"{r['model']} on {r['data']}: {r['faces']} faces, engine {r['engine']}", "",
             f"| {'':36} | plain | flip TTA | flip vs plain |", "| --- | --- | --- | --- |"]
    lines += [f"| {a:36} | {b} | {c} | {d} |" for a, b, c, d in rows]
    lines += ["", f"route agreement: {r['route_agreement']:.4f} of all faces"]
    return "\n".join(lines)


def main() -> None:
    """Measure, print the table, optionally write the JSON."""
    a = _args()
    r = measure(a)
    print(_table(r))
    if a.json:
        Path(a.json).write_text(json.dumps(r, indent=2))


if __name__ == "__main__":
    main()
