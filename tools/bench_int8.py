"""The int8 CPU engine against fp32, side by side in one run, on FER+ PublicTest.

    python tools/bench_int8.py [--model engines/default] [--threads 2] [--rounds 15] [--json out.json]

Both engines are onnxruntime on the CPU with the same thread count. Timing is interleaved
(fp32 and int8 alternate, the order flipping every round, so load from other processes falls on
both): median milliseconds per call at batch 1 and batch 16, real faces. Quality on every
PublicTest face (accuracy, ECE and Spearman on the faces with an emotion majority): majority-label
accuracy, ECE of ``mean_probs``, Spearman(aleatoric, annotators' vote entropy), the routes under
the default config's thresholds (routing.* of ``configs/default.yaml``, the shipped model's),
the share of faces whose route is the same with both engines, and the largest absolute
difference of every output. int8 is the file ``precision: int8`` runs: a local build
(``onnx/<id>-int8.onnx``) if there is one, else the model's shipped ``engine_int8.onnx`` (the
file the documented figures apply to); ``--calibration`` builds a missing local file first.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

from uar_stream.backends import create_engine
from uar_stream.backends.onnxruntime_backend import default_threads
from uar_stream.config import load_config
from uar_stream.labels import emotion_rows, majority_label, vote_entropy
from uar_stream.metrics import accuracy, ece, spearman
from uar_stream.model.preprocess import prepare_batch
from uar_stream.model.store import read_manifest
from uar_stream.pipeline.routing import router_for

ROOT = Path(__file__).resolve().parents[1]
PUBLICTEST = ROOT.parent / "shared" / "data" / "ferplus" / "publictest.npz"
PRECISIONS = ("fp32", "int8")
OUTPUTS = ("mean_probs", "member_probs", "total", "aleatoric", "epistemic", "density")


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / "engines" / "default"))
    ap.add_argument("--data", default=str(PUBLICTEST), help="FER+-layout .npz (images, votes)")
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads for both (0: default)")
    ap.add_argument("--rounds", type=int, default=15, help="interleaved timing rounds")
    ap.add_argument("--calls", type=int, default=10, help="timed calls per engine, batch and round")
    ap.add_argument("--calibration", help="build a missing int8 file from these training faces")
    ap.add_argument("--json", help="also write the numbers here")
    return ap.parse_args()


def _engines(a: argparse.Namespace) -> dict:
    from uar_stream.backends.export import onnx_path
    from uar_stream.backends.quantize import build_int8

    if a.calibration and not onnx_path(a.model, "int8").exists():
        build_int8(a.model, a.calibration)
    return {p: create_engine(a.model, "onnxruntime", "cpu", p, threads=a.threads) for p in PRECISIONS}


def _timings(engines: dict, faces: np.ndarray, rounds: int, calls: int) -> dict:
    """{precision: {batch: median ms}}, fp32 and int8 alternating call blocks."""
    times = {p: {1: [], 16: []} for p in engines}
    for p in engines:  # warm-up: first calls allocate
        for b in (1, 16):
            engines[p].infer(faces[:b])
    for r in range(rounds):
        order = PRECISIONS if r % 2 == 0 else PRECISIONS[::-1]
        for b in (1, 16):
            for p in order:
                x = faces[b * r % 64:][:b]
                for _ in range(calls):
                    t = time.perf_counter()
                    engines[p].infer(x)
                    times[p][b].append((time.perf_counter() - t) * 1e3)
    return {p: {b: statistics.median(v) for b, v in tb.items()} for p, tb in times.items()}


def _quality(out, votes: np.ndarray, routes: np.ndarray) -> dict:
    em = emotion_rows(votes)
    labels = majority_label(votes)
    shares = {r: float((routes == r).mean()) for r in ("confident", "ambiguous", "out_of_distribution")}
    return {"accuracy": accuracy(out.mean_probs[em], labels[em]), "ece": ece(out.mean_probs[em], labels[em]),
            "spearman_aleatoric_vote_entropy": spearman(out.aleatoric[em], vote_entropy(votes)[em]),
            "routes": shares}


def _routes(router, out) -> np.ndarray:
    return np.array([r.value for r in router.route_batch(out.aleatoric, out.epistemic, out.density)])


def measure(a: argparse.Namespace) -> dict:
    """Every number of the report (the JSON)."""
    with np.load(a.data, allow_pickle=False) as d:
        images, votes = d["images"], d["votes"]
    faces = prepare_batch(images)
    engines = _engines(a)
    router = router_for(load_config().routing, read_manifest(a.model).density is not None, a.model)
    outs = {p: e.infer(faces) for p, e in engines.items()}
    routes = {p: _routes(router, o) for p, o in outs.items()}
    em = emotion_rows(votes)
    same = routes["fp32"] == routes["int8"]
    diffs = {k: float(np.abs(getattr(outs["fp32"], k) - getattr(outs["int8"], k)).max())
             for k in OUTPUTS if getattr(outs["fp32"], k) is not None}
    speed = _timings(engines, faces, a.rounds, a.calls)
    return {"model": str(a.model), "data": str(a.data), "faces": len(faces), "emotion_faces": int(em.sum()),
            "threads": engines["fp32"].threads, "files": {p: str(e.onnx_path) for p, e in engines.items()},
            "ms_per_call": speed,
            "speedup": {b: speed["fp32"][b] / speed["int8"][b] for b in (1, 16)},
            "quality": {p: _quality(outs[p], votes, routes[p]) for p in PRECISIONS},
            "route_agreement": float(same.mean()), "route_agreement_emotion_faces": float(same[em].mean()),
            "route_changes": _changes(routes), "max_abs_diff": diffs}


def _changes(routes: dict) -> dict:
    """{'fp32 -> int8' route pair: faces} for the faces whose route differs."""
    pairs: dict[str, int] = {}
    for f, q in zip(routes["fp32"], routes["int8"], strict=True):
        if f != q:
            pairs[f"{f} -> {q}"] = pairs.get(f"{f} -> {q}", 0) + 1
    return pairs


def _table(r: dict) -> str:
    q, s = r["quality"], r["ms_per_call"]
    rows = [(f"ms per call, batch {b}", f"{s['fp32'][b]:.2f}", f"{s['int8'][b]:.2f}",
             f"{r['speedup'][b]:.2f}x")
            for b in (1, 16)]
    for key, label in (("accuracy", "accuracy (majority label)"), ("ece", "ECE (15 bins)"),
                       ("spearman_aleatoric_vote_entropy", "Spearman(aleatoric, vote entropy)")):
        rows.append((label, f"{q['fp32'][key]:.4f}", f"{q['int8'][key]:.4f}",
                     f"{q['int8'][key] - q['fp32'][key]:+.4f}"))
    for route in q["fp32"]["routes"]:
        rows.append((f"share routed {route}", f"{q['fp32']['routes'][route]:.4f}",
                     f"{q['int8']['routes'][route]:.4f}", ""))
    lines = [f"{r['model']} on {r['data']}: {r['faces']} faces ({r['emotion_faces']} with an emotion "
             f"majority), onnxruntime CPU, {r['threads']} threads", "",
             f"| {'':36} | fp32 | int8 | int8 vs fp32 |", "| --- | --- | --- | --- |"]
    lines += [f"| {a:36} | {b} | {c} | {d} |" for a, b, c, d in rows]
    lines += ["", f"route agreement: {r['route_agreement']:.4f} of all faces "
              f"({r['route_agreement_emotion_faces']:.4f} of emotion faces); changes: {r['route_changes']}",
              "max |int8 - fp32|: " + ", ".join(f"{k} {v:.4f}" for k, v in r["max_abs_diff"].items())]
    return "\n".join(lines)


def main() -> None:
    """Measure, print the table, optionally write the JSON."""
    a = _args()
    if a.threads <= 0:
        a.threads = default_threads()
    r = measure(a)
    print(_table(r))
    if a.json:
        Path(a.json).write_text(json.dumps(r, indent=2) + "\n")


if __name__ == "__main__":
    main()
