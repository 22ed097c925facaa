"""What detecting every k frames and re-classifying every m frames cost and give.

Per video and (k, m): fps of the stream (frames over the wall time from the first result to
the last, tracking on, one thread), the share of every-frame faces still found (IoU >= 0.5),
and the share of face-frames whose *shown* result (route, and the label when confident)
equals every-frame analysis (k = m = 1) - all measured side by side in one run. Then how many
30-fps single-face streams the machine keeps up with: N streams of one looped clip at once
(one thread each, one Analyzer), for N = 1, 2, ...: the slowest stream's fps.

    python tools/bench_schedule.py [--videos lp_driving_d3.mp4 facenet_video.mp4]
        [--km 1,1 2,2 3,3 5,5] [--streams-clip pyfeat_single_face.mp4] [--max-streams 6]
        [--mode auto] [--config configs/many_cameras.yaml] [--json out.json]

``--config``: the base configuration of the ``--mode`` rows (e.g. the many-cameras one, whose
engine uses one thread); ``--km``/``--streams-km`` still set k and m. The ``--fast-before``
rows always use the built-in defaults (fast mode, every frame), and so does the agreement
reference then (every frame in ``--mode``: the engine and settings of the defaults).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from uar_stream import Analyzer, load_config
from uar_stream.flow import Route
from uar_stream.pipeline.tracking import iou_matrix

ROOT = Path(__file__).resolve().parents[1]
MEDIA = ROOT.parent / "shared" / "media"


def shown(f) -> tuple:
    """What a viewer reads for a face: the route, and the label when one is shown."""
    return (f.route.value, f.label if f.route is Route.CONFIDENT else None)


def run_stream(an: Analyzer, path: Path) -> tuple[list, float]:
    """Per frame (boxes, shown results); fps from the first result to the last."""
    frames, t_first = [], None
    with an.stream(str(path), pipelined=False, tracking=True) as st:
        for r in st:
            t_first = t_first or time.perf_counter()
            frames.append((np.array([f.box for f in r.faces], float).reshape(-1, 4),
                           [shown(f) for f in r.faces]))
    dt = time.perf_counter() - t_first
    return frames, (len(frames) - 1) / dt if dt > 0 else 0.0


def agreement(ref: list, got: list) -> tuple[float, float]:
    """(share of reference faces found, share of found ones showing the same result)."""
    found = same = total = 0
    for (rb, rs), (gb, gs) in zip(ref, got, strict=True):
        total += len(rb)
        if not len(rb) or not len(gb):
            continue
        m = iou_matrix(rb, gb)
        for i in range(len(rb)):
            j = int(np.argmax(m[i]))
            if m[i, j] >= 0.5:
                found += 1
                same += rs[i] == gs[j]
    return found / max(total, 1), same / max(found, 1)


def looped(path: Path, times: int, tmp: Path) -> Path:
    """The clip repeated ``times`` times (a longer file, so N streams overlap in time)."""
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, im = cap.read()
        if not ok:
            break
        frames.append(im)
    out = tmp / f"loop_{path.stem}.avi"
    h, w = frames[0].shape[:2]
    wr = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), 30, (w, h))
    for _ in range(times):
        for im in frames:
            wr.write(im)
    wr.release()
    return out


def concurrent_fps(an: Analyzer, clip: Path, n: int) -> float:
    """The slowest of n streams of ``clip`` run at once."""
    rates = []

    def one():
        rates.append(run_stream(an, clip)[1])
    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return min(rates)


def main(argv: list[str] | None = None) -> int:
    """Print the k/m table, then the concurrent-stream capacity, before (1,1) and after."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", nargs="*", default=["lp_driving_d3.mp4", "facenet_video.mp4"])
    ap.add_argument("--km", nargs="+", default=["1,1", "2,2", "3,3", "5,5"])
    ap.add_argument("--media", type=Path, default=MEDIA)
    ap.add_argument("--mode", default="auto")
    ap.add_argument("--config", type=Path, help="base config of the --mode rows (default: built-in)")
    ap.add_argument("--streams-clip", default="pyfeat_single_face.mp4")
    ap.add_argument("--streams-km", nargs="+", default=["1,1", "3,3"])
    ap.add_argument("--max-streams", type=int, default=6, help="0: only the CPU-time estimate")
    ap.add_argument("--repeats", type=int, default=1, help="CPU-time runs per variant (the least counts)")
    ap.add_argument("--fast-before", action="store_true", help="also the old default (fast mode) as 'before'")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    rows = {"km": km_table(a), "streams": capacity(a)}
    if a.json:
        a.json.write_text(json.dumps(rows, indent=2))
    return 0


def variant_config(a, mode: str, k: int, m: int, before: bool = False):
    """The config of one row: ``--config`` (or the defaults; always the defaults for the
    'before' row) with the detector mode, k and m set."""
    return load_config(None if before else a.config, {
        "detector.mode": mode, "tracking.detect_every": k, "tracking.classify_every": m})


def km_table(a) -> dict:
    """fps, faces found and shown-result agreement per video and (mode, k, m); the reference is
    every-frame analysis (k = m = 1) in ``--mode``; ``--fast-before`` adds today's default
    before this work (fast mode, every frame)."""
    rows = {}
    variants = ([("fast", 1, 1)] if a.fast_before else []) + [
        (a.mode, *(int(v) for v in km.split(","))) for km in a.km]
    for name in a.videos:
        runs = {}
        if a.config is not None:  # the reference: every frame, built-in defaults (its engine)
            with Analyzer(variant_config(a, a.mode, 1, 1, before=True)) as an:
                ref = run_stream(an, a.media / name)[0]
        for mode, k, m in variants:
            cfg = variant_config(a, mode, k, m, before=(mode, k, m) == ("fast", 1, 1) and a.fast_before)
            with Analyzer(cfg) as an:
                runs[(mode, k, m)] = run_stream(an, a.media / name)
        if a.config is None:
            ref = runs[(a.mode, 1, 1)][0]
        for (mode, k, m), (frames, fps) in runs.items():
            found, same = agreement(ref, frames)
            rows[f"{name} {mode} k={k} m={m}"] = {"fps": round(fps, 1), "found": round(found, 3),
                                                   "same_shown": round(same, 3)}
            print(f"{name:22s} {mode:8s} k={k} m={m}: {fps:6.1f} fps  faces found {found:.1%}  "
                  f"shown result as every-frame {same:.1%}")
    return rows


def cpu_per_frame(an: Analyzer, clip: Path, repeats: int) -> float:
    """CPU ms per frame of one stream (all threads of the process: robust to other load on
    the machine, and what bounds how many streams 2 cores carry); the least of ``repeats``."""
    best = float("inf")
    for _ in range(max(1, repeats)):
        c0 = time.process_time()
        frames, _ = run_stream(an, clip)
        best = min(best, (time.process_time() - c0) * 1000 / len(frames))
    return best


def capacity(a) -> dict:
    """The slowest stream's fps with N concurrent streams, per variant, until below 30."""
    rows = {}
    tmp = Path(tempfile.mkdtemp())
    try:
        clip = looped(a.media / a.streams_clip, 4, tmp)
        variants = [("fast", "1,1", True)] if a.fast_before else []
        variants += [(a.mode, km, False) for km in a.streams_km]
        for mode, km, before in variants:
            k, m = (int(v) for v in km.split(","))
            with Analyzer(variant_config(a, mode, k, m, before)) as an:
                cpu_ms = cpu_per_frame(an, clip, a.repeats)
                rows[f"{mode} k={k} m={m} cpu_ms_per_frame"] = round(cpu_ms, 2)
                print(f"{mode} k={k} m={m}: {cpu_ms:.1f} CPU ms per frame -> 2 cores carry "
                      f"{2000 / (30 * cpu_ms):.1f} streams of 30 fps")
                keep = 0
                for n in range(1, a.max_streams + 1):
                    slowest = concurrent_fps(an, clip, n)
                    rows[f"{mode} k={k} m={m} n={n}"] = round(slowest, 1)
                    print(f"{mode} k={k} m={m}: {n} streams at once, slowest {slowest:.1f} fps")
                    if slowest < 30:
                        break
                    keep = n
            print(f"  -> {keep} real-time 30-fps streams ({mode}, k={k}, m={m})")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


if __name__ == "__main__":
    sys.exit(main())
