"""Benchmark ``serve --ray`` on a real two-node Ray cluster started here on 127.0.0.1.

    python tools/bench_cluster.py [--model engines/default] [--node-loss] [--json out.json]

1. Start-up: head node, worker node, the ensemble's Serve application (seconds), and the
   memory of every process this benchmark started (PSS, MiB) after each step.
2. Per-frame engine time, same crops (every frame's faces of two shared clips, detected
   once in this process): the in-process engine (``engine.infer``) against one Serve handle
   round trip (``ServeBatcher.submit``: what a camera actor does per classify call).
3. Two file cameras end to end: ``ClusterStream`` (actors + Serve) against ``MultiStream``
   (one process), same clips: fps, latency, and the batch sizes the requests saw.
4. ``--node-loss CPUS``: three looping cameras, unpinned; the worker node is removed mid-run; what
   happened to the cameras on it (restarted where, after how long) and to the replica.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

# Read by Ray at import: keep every node (and the GCS) on loopback, not the host's address.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

ROOT = Path(__file__).resolve().parent.parent
MEDIA = ROOT.parent / "shared" / "media"
CLIPS = ("fr_short_hamilton_clip.mp4", "lp_driving_d18.mp4")


def pss_mib(root: int = os.getpid()) -> float:
    """PSS of ``root`` and every descendant (the cluster's processes are this one's children)."""
    def kids(pid: int) -> list[int]:
        out = [pid]
        try:
            for t in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{t}/children") as f:
                    out += [k for c in f.read().split() for k in kids(int(c))]
        except OSError:
            pass
        return out
    total = 0
    for pid in set(kids(root)):
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                total += sum(int(line.split()[1]) for line in f if line.startswith("Pss:"))
        except OSError:
            pass
    return round(total / 1024, 1)


def start_cluster(head_cpus: int = 1) -> tuple[object, object, dict]:
    """A head and a worker node (1 CPU) on loopback; their start-up times and memory."""
    from ray.cluster_utils import Cluster

    t0 = time.perf_counter()
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": head_cpus, "include_dashboard": False,
                                                      "node_ip_address": "127.0.0.1"})
    t1 = time.perf_counter()
    mem_head = pss_mib()
    worker = c.add_node(num_cpus=1, node_ip_address="127.0.0.1")
    c.wait_for_nodes()
    t2 = time.perf_counter()
    return c, worker, {"head_s": round(t1 - t0, 1), "worker_s": round(t2 - t1, 1), "head_pss_mib": mem_head,
                       "two_nodes_pss_mib": pss_mib()}


def frame_batches(model: str, limit: int = 200) -> list[np.ndarray]:
    """Every frame's prepared crops (frames with faces), from the shared clips."""
    from uar_stream.config import from_dict
    from uar_stream.model.preprocess import prepare_batch
    from uar_stream.pipeline.analyzer import Analyzer
    from uar_stream.pipeline.sources import open_source

    out = []
    with Analyzer(from_dict({"model": {"path": model}})) as an:
        for clip in CLIPS:
            src = open_source(str(MEDIA / clip))
            for _ in range(limit):
                f = src.read()
                if f is None:
                    break
                b = an.detect(f.image)
                if len(b.faces):
                    out.append(prepare_batch(b.crops))
            src.close()
    return out


def _ms(xs: list[float]) -> dict:
    p50, p95 = np.percentile(xs, [50, 95])
    return {"p50_ms": round(float(p50), 2), "p95_ms": round(float(p95), 2)}


def round_trip(model: str, batches: list[np.ndarray], handle) -> dict:
    """Per request: the in-process engine vs the Serve round trip, alternating frame by frame."""
    from uar_stream.backends import create_engine
    from uar_stream.cluster.batcher import ServeBatcher
    from uar_stream.model.locate import resolve_model_path

    engine = create_engine(resolve_model_path(model))
    remote = ServeBatcher(handle, 16)
    for b in batches[:10]:  # warm both
        engine.infer(b)
        remote.submit("bench", b).result()
    local_ms, serve_ms = [], []
    for b in batches:
        t = time.perf_counter()
        engine.infer(b)
        local_ms.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        remote.submit("bench", b).result()
        serve_ms.append((time.perf_counter() - t) * 1000)
    faces = [len(b) for b in batches]
    return {"requests": len(batches), "faces_per_request": round(float(np.mean(faces)), 2),
            "in_process": _ms(local_ms), "serve": _ms(serve_ms),
            "overhead_p50_ms": round(float(np.percentile(serve_ms, 50) - np.percentile(local_ms, 50)), 2)}


def _cams(loop: bool = False) -> list[dict]:
    return [{"id": Path(c).stem[:12], "source": str(MEDIA / c), "loop": loop} for c in CLIPS]


def _run_until_ended(ms, timeout: float = 180.0) -> dict:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        st = [c.status() for c in ms.cameras()]
        if all(s["state"] in ("ended", "failed") for s in st):
            break
        time.sleep(0.5)
    dt = time.perf_counter() - t0
    return {"seconds": round(dt, 1), "cameras": [{k: s[k] for k in ("id", "frames", "fps", "latency_ms_p50",
                                                                      "latency_ms_p95", "state")}
                                                 for s in st], "batch": [s.get("batch") for s in st]}


def end_to_end(model: str) -> dict:
    """The same two file cameras through ClusterStream and through MultiStream."""
    from uar_stream.cluster.options import ClusterOptions
    from uar_stream.cluster.service import ClusterStream
    from uar_stream.serve.cameras import load_serve_config
    from uar_stream.serve.multistream import MultiStream

    cfg = load_serve_config({"model": {"path": model}, "cameras": _cams()})
    out = {}
    t = time.perf_counter()
    with ClusterStream(cfg, ClusterOptions(camera_cpus=0.25, replica_cpus=0.25)) as cs:
        out["cluster_start_s"] = round(time.perf_counter() - t, 1)
        out["cluster"] = _run_until_ended(cs)
        out["cluster_pss_mib"] = pss_mib()
        b = cs.stats()
        out["cluster_batches"] = {"calls": b.calls, "faces": b.faces, "requests": b.requests,
                                  "fill": round(b.fill, 2), "max_fill": b.max_fill}
    with MultiStream(cfg) as ms:
        out["in_process"] = _run_until_ended(ms)
        b = ms.stats()
        out["in_process_batches"] = {"calls": b.calls, "faces": b.faces, "fill": round(b.fill, 2),
                                     "max_fill": b.max_fill}
    return out


def node_loss(c, worker, model: str, cpus: float) -> dict:
    """Three looping cameras (``cpus`` each), unpinned; remove the worker node; watch for
    60 s. A camera moves only where there is room for it (else it waits, ``restarting``)."""
    from uar_stream.cluster.options import ClusterOptions
    from uar_stream.cluster.service import ClusterStream
    from uar_stream.serve.cameras import load_serve_config

    cams = _cams(loop=True)
    cams.append({**cams[0], "id": "third"})
    cfg = load_serve_config({"model": {"path": model}, "cameras": cams})
    log = []
    opts = ClusterOptions(camera_cpus=cpus, replica_cpus=0.25, max_restarts=3)
    with ClusterStream(cfg, opts) as cs:
        time.sleep(5)
        before = {s["id"]: (s["node_id"], s["frames"]) for s in (x.status() for x in cs.cameras())}
        t0 = time.perf_counter()
        c.remove_node(worker)
        while time.perf_counter() - t0 < 60:
            st = {s["id"]: s for s in (x.status() for x in cs.cameras())}
            log.append({"t": round(time.perf_counter() - t0, 1),
                        **{k: (v["state"], v["restarts"], v["frames"], (v["node_id"] or "")[:8])
                           for k, v in st.items()}})
            time.sleep(2)
    return {"worker_node": worker.node_id[:8], "before": {k: (n[:8], f) for k, (n, f) in before.items()},
            "timeline": log}


def main(argv: list[str] | None = None) -> int:
    """Run the steps; print JSON (and write it to --json)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=str(ROOT / "engines" / "default"))
    p.add_argument("--node-loss", type=float, default=None, metavar="CPUS",
                   help="also remove the worker node under two cameras of CPUS each")
    p.add_argument("--node-loss-only", action="store_true", help="skip steps 2 and 3")
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    import ray

    res: dict = {}
    # node loss alone: a head with room for the cameras that move over
    c, worker, res["startup"] = start_cluster(2 if a.node_loss_only else 1)
    try:
        ray.init(address=c.address, namespace="uar-stream", log_to_driver=False)
        if not a.node_loss_only:
            _steps(res, a.model, c.address)
        if a.node_loss is not None:
            res["node_loss"] = node_loss(c, worker, a.model, a.node_loss)
    finally:
        ray.shutdown()
        c.shutdown()
    text = json.dumps(res, indent=1)
    print(text)
    if a.json:
        Path(a.json).write_text(text + "\n")
    return 0


def _steps(res: dict, model: str, address: str) -> None:
    """Steps 2 and 3 (the Serve application deployed for step 2 only)."""
    from ray import serve

    from uar_stream.cluster.connect import Connection
    from uar_stream.cluster.options import ClusterOptions
    from uar_stream.config import from_dict

    batches = frame_batches(model)
    conn = Connection(address)
    t = time.perf_counter()
    conn.deploy(from_dict({"model": {"path": model}}), ClusterOptions(replica_cpus=0.25))
    res["startup"]["serve_app_s"] = round(time.perf_counter() - t, 1)
    res["startup"]["with_serve_pss_mib"] = pss_mib()
    res["round_trip"] = round_trip(model, batches, serve.get_app_handle("uar-ensemble"))
    conn.close()
    res["end_to_end"] = end_to_end(model)


if __name__ == "__main__":
    sys.exit(main())
