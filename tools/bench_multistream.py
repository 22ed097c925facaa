"""Benchmark many cameras on one engine (``MultiStream``) against one process per camera.

    python tools/bench_multistream.py --model engines/default [--cameras 1,2,4,8] [--seconds 10]
        [--kinds clip,rtsp,processes] [--json out.json]

Every camera is a live, single-face 30-fps source (``lp_driving_d18.mp4``):

- ``clip``: the shared clip looped and paced at its frame rate (``loop`` + ``realtime``),
  newest frame wins;
- ``rtsp``: the clip served over RTSP on loopback (tests/support/live.RtspServer), one
  connection per camera;
- ``processes``: the same RTSP stream read by N separate ``uar-stream run`` processes
  (each with its own engine), the baseline.

After a warm-up (every camera has results), each row measures ``--seconds``: aggregate faces/s
and frames/s, per-camera fps (min / median / max), p95 capture-to-result latency (the worst
camera), batch fill (faces per engine call; serve only), fairness (slowest / fastest
camera fps), and CPU ms per analysed frame (user + system time of the serving process(es),
which other jobs on the machine do not inflate) with the number of 30-fps cameras two cores
could analyse at that cost. Rows run one after another in one invocation, so they share the machine's state.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for the tests.support package
MEDIA = ROOT.parent / "shared" / "media"
CLIP = "lp_driving_d18.mp4"


def _cpu_s(pid: int | None = None) -> float:
    """CPU seconds (user + system) used so far by this process or by ``pid``."""
    if pid is None:
        t = os.times()
        return t.user + t.system
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _row(kind: str, n: int, seconds: float, per_cam: list[dict], fill: float | None,
         cpu_s: float) -> dict:
    """One table row from per-camera {frames, faces, latencies} over ``seconds``; ``cpu_s``:
    CPU seconds spent meanwhile, which gives CPU ms per frame (independent of other load)."""
    fps = [c["frames"] / seconds for c in per_cam]
    frames = sum(c["frames"] for c in per_cam)
    cpu_ms = 1000 * cpu_s / frames if frames else None
    p95 = [float(np.percentile(c["lat"], 95)) for c in per_cam if c["lat"]]
    return {"kind": kind, "cameras": n, "seconds": seconds,
            "faces_per_s": round(sum(c["faces"] for c in per_cam) / seconds, 1),
            "frames_per_s": round(sum(fps), 1),
            "fps_min": round(min(fps), 1), "fps_median": round(float(np.median(fps)), 1),
            "fps_max": round(max(fps), 1),
            "latency_ms_p95_worst": round(max(p95), 1) if p95 else None,
            "batch_fill": None if fill is None else round(fill, 2),
            "fairness": round(min(fps) / max(fps), 2) if max(fps) > 0 else 0.0,
            "cpu_ms_per_frame": round(cpu_ms, 1) if cpu_ms else None,
            # how many 30-fps cameras 2 cores could analyse at that CPU cost per frame
            "cameras_30fps_on_2_cores": round(2000 / (30 * cpu_ms), 1) if cpu_ms else None}


def bench_serve(kind: str, n: int, seconds: float, model: str, url: str | None) -> dict:
    """N cameras in one MultiStream: looped paced clips, or N connections to the RTSP URL."""
    from uar_stream.serve import MultiStream, load_serve_config

    src = ({"source": url} if kind == "rtsp" else
           {"source": str(MEDIA / CLIP), "loop": True, "realtime": True})
    cfg = load_serve_config({"model": {"path": model}, "events": {"faces": "off"},
                             "cameras": [{"id": f"c{i}", **src} for i in range(n)]})
    with MultiStream(cfg) as ms:
        deadline = time.monotonic() + 60
        while min(c.view.frames for c in ms.cameras()) < 5 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # past FFmpeg's start-up burst
        sub = ms.subscribe_results(maxsize=100000)
        b0, c0 = ms.stats(), _cpu_s()
        time.sleep(seconds)
        b1, c1 = ms.stats(), _cpu_s()
        items = sub.drain()
    per = {f"c{i}": {"frames": 0, "faces": 0, "lat": []} for i in range(n)}
    for it in items:
        c = per[it.camera]
        c["frames"] += 1
        c["faces"] += len(it.result.faces)
        c["lat"].append(it.result.latency_ms)
    calls = b1.calls - b0.calls
    return _row(f"serve/{kind}", n, seconds, list(per.values()),
                (b1.faces - b0.faces) / calls if calls else 0.0, c1 - c0)


def bench_processes(n: int, seconds: float, model: str, url: str, work: Path) -> dict:
    """N ``uar-stream run`` processes on the RTSP URL; counted from their face events' times."""
    cfg = work / "proc.yaml"
    cfg.write_text(f"model: {{path: {model}}}\n")
    run = work / f"processes_{time.monotonic_ns()}"  # fresh files: an old log must not count as "started"
    run.mkdir()
    procs, logs = [], []
    for i in range(n):
        ev = run / f"p{i}.jsonl"
        logs.append(ev)
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "uar_stream.cli.main", "run", "--config", str(cfg), "--source", url,
             "--events", str(ev), "--face-events", "every_frame", "--no-progress",
             "--summary-json", str(run / f"p{i}.json")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT))

    def faces_logged(path: Path) -> int:
        return path.read_text().count('"event":"face"') if path.exists() else 0

    deadline = time.monotonic() + 120
    while min(faces_logged(p) for p in logs) < 5 and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    t0, c0 = time.time(), sum(_cpu_s(p.pid) for p in procs)
    time.sleep(seconds)
    t1, c1 = time.time(), sum(_cpu_s(p.pid) for p in procs)
    for p in procs:
        p.send_signal(signal.SIGINT)
    for p in procs:
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
    per = []
    for path in logs:
        recs = [json.loads(line) for line in path.read_text().splitlines()]
        faces = [r for r in recs if r["event"] == "face" and t0 <= r["time"] < t1]
        end = next((r for r in reversed(recs) if r["event"] == "run_ended"), {})
        # per-frame latency is not in face events: use the run's own p95 (whole run)
        lat = [end["latency_ms_p95"]] if end.get("latency_ms_p95") is not None else []
        per.append({"frames": len({r["frame"] for r in faces}), "faces": len(faces), "lat": lat})
    return _row("processes/rtsp", n, seconds, per, None, c1 - c0)


def main(argv: list[str] | None = None) -> int:
    """Run the rows and print them as a table (and JSON with ``--json``)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="engines/default")
    ap.add_argument("--cameras", default="1,2,4,8")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--kinds", default="clip,rtsp,processes")
    ap.add_argument("--json", help="write the rows here")
    a = ap.parse_args(argv)
    from tests.support.live import RtspServer

    counts = [int(x) for x in a.cameras.split(",")]
    kinds = a.kinds.split(",")
    rows = []
    with tempfile.TemporaryDirectory() as tmp, RtspServer(Path(tmp) / "srv", [MEDIA / CLIP]) as srv:
        url = srv.url(CLIP)
        for n in counts:
            for kind in kinds:
                if kind == "processes":
                    row = bench_processes(n, a.seconds, a.model, url, Path(tmp))
                else:
                    row = bench_serve(kind, n, a.seconds, a.model, url if kind == "rtsp" else None)
                rows.append(row)
                print(json.dumps(row), flush=True)
    cols = ["kind", "cameras", "faces_per_s", "frames_per_s", "fps_min", "fps_median", "fps_max",
            "latency_ms_p95_worst", "batch_fill", "fairness", "cpu_ms_per_frame", "cameras_30fps_on_2_cores"]
    print("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join("-" if r[c] is None else str(r[c]) for c in cols) + " |")
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
