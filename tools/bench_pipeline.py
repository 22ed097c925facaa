"""Pipeline benchmark: median fps and per-stage milliseconds on real videos.

Stages: decode (read a frame), detect (MediaPipe), align (similarity warp to 48x48),
infer (engine: fused ensemble + decomposition), route+draw (routing, overlay), encode
(video writer). Runs the same stages as `uar-stream run`, one after another (the
synchronous path), timing each.

    python tools/bench_pipeline.py [--videos A.mp4 B.mp4] [--model engines/default]
        [--backend auto] [--repeat 3] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from uar_stream import Analyzer, load_config
from uar_stream.backends import create_engine
from uar_stream.flow import FaceBatch
from uar_stream.model.locate import resolve_model_path
from uar_stream.pipeline.faces import align_face, to_bgr
from uar_stream.pipeline.sinks.video import VideoWriter
from uar_stream.pipeline.sources import open_source

STAGES = ("decode", "detect", "align", "infer", "route_draw", "encode")
MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"


def bench_video(an: Analyzer, path: Path, out_dir: Path) -> dict:
    """Run each stage of one video by hand and time it; one row of medians per video."""
    times = {s: [] for s in STAGES}
    faces = 0
    det = an.thread_detector()
    timer = an.engine
    with open_source(path) as src:
        sink = VideoWriter(out_dir / (path.stem + ".mp4"), src.fps, an.config.output.codec)
        while True:
            t0 = time.perf_counter()
            fr = src.read()
            t1 = time.perf_counter()
            if fr is None:
                break
            bgr = to_bgr(fr.image)
            found = det.detect(bgr)
            t2 = time.perf_counter()
            gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
            crops = [align_face(gray, f.landmarks) for f in found]
            t3 = time.perf_counter()
            timer.ms = 0.0
            results = an.classify([FaceBatch(found, np.stack(crops), bgr.shape[:2])])[0] if crops else []
            drawn = an.draw(bgr, results, 30.0)
            t4 = time.perf_counter()
            sink.write(drawn)
            t5 = time.perf_counter()
            times["decode"].append((t1 - t0) * 1000)
            times["detect"].append((t2 - t1) * 1000)
            times["align"].append((t3 - t2) * 1000)
            times["infer"].append(timer.ms)
            times["route_draw"].append((t4 - t3) * 1000 - timer.ms)
            times["encode"].append((t5 - t4) * 1000)
            faces += len(found)
        sink.close()
    total = [sum(times[s][i] for s in STAGES) for i in range(len(times["decode"]))]
    return {"video": path.name, "frames": len(total), "faces": faces,
            "fps_median": round(1000 / statistics.median(total), 1),
            "frame_ms_median": round(statistics.median(total), 2),
            "stage_ms_median": {s: round(statistics.median(times[s]), 2) for s in STAGES}}


class _TimedEngine:
    """Wraps the analyzer's engine to time the inference inside ``Analyzer.classify``."""

    def __init__(self, engine):
        self.engine, self.ms = engine, 0.0
        self.name, self.members, self.num_classes = engine.name, engine.members, engine.num_classes

    def infer(self, batch):
        t = time.perf_counter()
        out = self.engine.infer(batch)
        self.ms += (time.perf_counter() - t) * 1000
        return out


def main() -> None:
    """Benchmark each video (repeats, median), print the table, optionally write JSON."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", nargs="*", default=[str(MEDIA / "pyfeat_single_face.mp4"),
                                                    str(MEDIA / "facenet_video.mp4")])
    ap.add_argument("--model", default="engines/default")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--precision", default="auto", help="engine.precision, as `uar-stream run` uses it "
                    "(default auto: the shipped int8 file on the CPU)")
    ap.add_argument("--detector", default="full")
    ap.add_argument("--repeat", type=int, default=3, help="runs per video; the median run is reported")
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args()
    cfg = load_config({"model": {"path": a.model}, "engine": {"backend": a.backend, "precision": a.precision},
                       "detector": {"model": a.detector}})
    model_dir = resolve_model_path(cfg.model.path)
    e = cfg.engine
    an = Analyzer(cfg, engine=_TimedEngine(create_engine(model_dir, e.backend, e.device, e.precision,
                                                         e.max_batch, e.threads)))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for v in a.videos:
            runs = [bench_video(an, Path(v), Path(tmp)) for _ in range(a.repeat)]
            runs.sort(key=lambda r: r["fps_median"])
            rows.append({**runs[len(runs) // 2], "fps_runs": [r["fps_median"] for r in runs]})
    an.close()
    print(f"backend {an.engine.name}, detector {a.detector}, {os.cpu_count()} CPUs")
    print(f"{'video':28s} {'frames':>6s} {'faces':>6s} {'fps':>6s} " + " ".join(f"{s:>10s}" for s in STAGES))
    for r in rows:
        print(f"{r['video']:28s} {r['frames']:6d} {r['faces']:6d} {r['fps_median']:6.1f} "
              + " ".join(f"{r['stage_ms_median'][s]:10.2f}" for s in STAGES))
    if a.json:
        Path(a.json).write_text(json.dumps({"backend": an.engine.name, "results": rows}, indent=2))


if __name__ == "__main__":
    sys.exit(main())
