"""Where the time of a cold ``uar-stream evaluate`` goes, measured in CPU seconds (robust to
other jobs on the machine) and extrapolated to a full run on a given number of cores.

    python tools/bench_evaluation.py --model engines/default --faces 12 --cores 2

Corruption cost: CPU seconds per face for every (type, severity), single process, after a
warm-up face (numba JIT). Inference cost: CPU seconds per face of the single-threaded engine
each evaluation worker runs (``Predictor(model, threads=1)``: its batch of 32; one thread, so
the number is per core).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from uar_stream.datasets.ferplus import load_npz
from uar_stream.evaluation.corruptions import CORRUPTIONS, SEVERITIES, corrupt_faces
from uar_stream.evaluation.predict import Predictor
from uar_stream.labels import emotion_rows
from uar_stream.model.locate import resolve_model_path


def corruption_cpu(images: np.ndarray) -> dict[str, float]:
    """{type: CPU seconds per face, summed over the 5 severities}."""
    out = {}
    for name in CORRUPTIONS:
        corrupt_faces(images[:1], name, 1, seed=99)  # warm-up (JIT, file loads)
        t = time.process_time()
        for s in SEVERITIES:
            corrupt_faces(images, name, s, seed=0)
        out[name] = (time.process_time() - t) / len(images)
    return out


def inference_cpu(model: str, images: np.ndarray, reps: int = 3) -> tuple[str, float]:
    """CPU seconds per face of what an evaluation worker runs: a single-threaded engine behind
    the evaluation's Predictor (its batch size and input preparation)."""
    pred = Predictor(resolve_model_path(model), None, threads=1)
    pred.predict(images[:8])
    t = time.process_time()
    for _ in range(reps):
        pred.predict(images)
    return pred.engine.name, (time.process_time() - t) / (reps * len(images))


def main() -> None:
    """Print, as JSON, the CPU cost per face of each part of a cold evaluation run."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shared = Path(__file__).resolve().parents[2] / "shared"
    p.add_argument("--data", default=str(shared / "data/ferplus/publictest.npz"))
    p.add_argument("--model", default="engines/default")
    p.add_argument("--ldl", help="also time the LDL model")
    p.add_argument("--faces", type=int, default=12, help="faces to corrupt per set")
    p.add_argument("--cores", type=int, default=2)
    a = p.parse_args()
    faces = load_npz(a.data)
    images = faces.images[emotion_rows(faces.votes)]
    n_full = len(images)
    corr = corruption_cpu(images[: a.faces])
    name, inf = inference_cpu(a.model, images[:512])
    sets = len(CORRUPTIONS) * len(SEVERITIES) + 2  # + clean + resampling control
    corr_total = sum(corr.values()) * n_full
    inf_total = inf * n_full * sets
    res = {"faces_full_run": n_full,
           "corruption_cpu_s_per_face_all_severities": {k: round(v, 4) for k, v in corr.items()},
           "corruption_cpu_s_full": round(corr_total), "engine": name,
           "inference_cpu_ms_per_face": round(1000 * inf, 3), "inference_cpu_s_full": round(inf_total)}
    if a.ldl:
        _, inf_ldl = inference_cpu(a.ldl, images[:512])
        res["ldl_inference_cpu_ms_per_face"] = round(1000 * inf_ldl, 3)
        # The LDL model runs on clean faces, the control and the top severity only (default).
        res["ldl_inference_cpu_s_full"] = round(inf_ldl * n_full * (len(CORRUPTIONS) + 2))
    total = corr_total + inf_total + res.get("ldl_inference_cpu_s_full", 0)
    res["estimated_cold_wall_min_on_cores"] = {a.cores: round(total / a.cores / 60, 1)}
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
