"""Benchmark live analysis: latency (p50/p95) and fps, pipelined vs synchronous.

    python tools/bench_live.py --model engines/default [--seconds 10] [--json out.json]

1. Files (every frame, back-pressure): fps of the whole clip, pipelined (capture + detect
   threads overlapping inference) vs synchronous (one thread).
2. Live RTSP on loopback (tests/support/live.RtspServer, aio-rtsp-toolkit), looping a clip
   with 1 face (lp_driving_d18.mp4) and a walking crowd (facenet_video.mp4): for
   ``--seconds`` each, capture-to-result latency, "age" (how far the result is behind the
   live picture, from the stream position), analysed fps and dropped frames.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for the tests.support package
MEDIA = ROOT.parent / "shared" / "media"


def _pct(x, q):
    return round(float(np.percentile(x, q)), 1) if len(x) else None


def bench_file(an, clip: Path, pipelined: bool) -> dict:
    """One row: frames, fps and latency percentiles of analysing a whole video file."""
    t0 = time.perf_counter()
    with an.stream(str(clip), pipelined=pipelined) as s:
        n = sum(1 for _ in s)
        lat = s.latencies_ms
    dt = time.perf_counter() - t0
    return {"source": clip.name, "mode": "pipelined" if pipelined else "sync", "frames": n,
            "fps": round(n / dt, 2), "latency_ms_p50": _pct(lat, 50), "latency_ms_p95": _pct(lat, 95)}


def bench_live(an, url: str, name: str, pipelined: bool, seconds: float) -> dict:
    """One row for ``seconds`` of a live stream: fps, latency and frame age (capture to result)."""
    results = []
    with an.stream(url, pipelined=pipelined) as s:
        t_start = None
        for r in s:
            results.append((r.frame.captured_at, r.frame.stream_pos_s, r.latency_ms, len(r.faces)))
            t_start = t_start or time.perf_counter()
            if time.perf_counter() - t_start > seconds:
                break
        dropped = s.dropped
    skip = max(1, len(results) // 10)  # FFmpeg's start-up burst
    # When position 0 was on air: the earliest (captured - position) of any frame, i.e.
    # the frame read with the least delay (the start-up burst arrives ahead of real time).
    on_air0 = min(c - p for c, p, _, _ in results)
    ages = [(c + ms / 1000 - (on_air0 + p)) * 1000 for c, p, ms, _ in results[skip:]]
    lat = [ms for _, _, ms, _ in results[skip:]]
    span = results[-1][0] - results[0][0]
    return {"source": name, "mode": "pipelined" if pipelined else "sync", "frames": len(results),
            "fps": round((len(results) - 1) / span, 2) if span > 0 else None,
            "faces_per_frame": round(float(np.mean([f for *_, f in results])), 2),
            "latency_ms_p50": _pct(lat, 50), "latency_ms_p95": _pct(lat, 95),
            "age_ms_p50": _pct(ages, 50), "age_ms_p95": _pct(ages, 95),
            "age_ms_last": round(ages[-1], 1) if ages else None, "dropped": dropped}


def main() -> int:
    """Benchmark the shared clips as files and as loopback RTSP streams; print (and save) the rows."""
    from uar_stream import Analyzer, load_config

    from tests.support.live import RtspServer

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="engines/default")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--json", help="write the rows here")
    a = ap.parse_args()
    rows = []
    with Analyzer(load_config({"model": {"path": a.model}})) as an:
        an.analyze(np.zeros((360, 640, 3), np.uint8))  # warm the engine
        for clip in ("pyfeat_single_face.mp4", "facenet_video.mp4"):
            for pipelined in (True, False):
                rows.append(bench_file(an, MEDIA / clip, pipelined))
                print(rows[-1], flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            clips = [MEDIA / "lp_driving_d18.mp4", MEDIA / "facenet_video.mp4"]
            with RtspServer(Path(tmp), clips) as srv:
                for clip in clips:
                    for pipelined in (True, False):
                        rows.append(bench_live(an, srv.url(clip.name), f"rtsp:{clip.name}",
                                               pipelined, a.seconds))
                        print(rows[-1], flush=True)
    cols = ["source", "mode", "frames", "fps", "latency_ms_p50", "latency_ms_p95", "age_ms_p50",
            "age_ms_p95", "dropped"]
    print("\n| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(str(r.get(c, "")) for c in cols) + " |")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
