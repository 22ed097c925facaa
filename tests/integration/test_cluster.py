"""``uar-stream serve --ray``: a real two-node Ray cluster on 127.0.0.1 (both nodes started
in-process by ray.cluster_utils, no ``ray start``: the CLI rewrites 127.0.0.1 to the host's
address), three cameras (two shared files, one RTSP stream on loopback), one camera actor
killed mid-run."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import cv2
import pytest
import yaml

from tests.support.live import RtspServer, free_port
from tests.support.paths import MEDIA, need

pytestmark = pytest.mark.slow

# Read by Ray at import: without it, Ray takes the host's routable address as "this node's"
# (for the GCS too) instead of loopback.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
ray = pytest.importorskip("ray")

DOOR_FRAMES, HALL_FRAMES = 354, 216  # lp_driving_d3.mp4, lp_driving_d18.mp4


@pytest.fixture(scope="module")
def cluster():
    """Head (site_a) + one worker node (site_b), every port on 127.0.0.1."""
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "include_dashboard": False, "node_ip_address": "127.0.0.1",
        "resources": {"site_a": 10}})
    try:
        worker = c.add_node(num_cpus=1, node_ip_address="127.0.0.1", resources={"site_b": 10})
        c.wait_for_nodes()
        assert c.address.startswith("127.0.0.1:"), f"the cluster is not on loopback: {c.address}"
        yield c, c.head_node.node_id, worker.node_id
    finally:
        c.shutdown()


class Service:
    """``uar-stream serve --ray`` as a subprocess; its stderr in a file for failure messages."""

    def __init__(self, config: Path, address: str, cwd: Path):
        self.port, self.err = free_port(), cwd / "serve.err"
        env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
        with open(self.err, "w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "uar_stream.cli.main", "serve", "--config", str(config),
                 "--ray", address, "--port", str(self.port)],
                cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=err, text=True)

    def get(self, path: str):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as r:
            body = r.read()
            return json.loads(body) if r.headers.get_content_type() == "application/json" else body.decode()

    def streams(self) -> dict:
        return {s["id"]: s for s in self.get("/api/streams")["streams"]}

    def wait(self, what: str, check, timeout: float):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited ({self.proc.returncode}) while waiting for {what}: "
                                     f"{self.err.read_text()[-3000:]}")
            try:
                got = check()
            except OSError:
                got = None
            if got:
                return got
            time.sleep(0.3)
        raise AssertionError(f"timed out waiting for {what}: {self.err.read_text()[-3000:]}")

    def stop(self) -> str:
        """SIGTERM (as a service manager would), then the summaries it printed."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        return out


def _events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]  # a kill cuts between lines


def _frames(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def _config(tmp: Path, rtsp_url: str) -> Path:
    door = need(MEDIA / "lp_driving_d3.mp4")  # the one killed: the longest
    hall = need(MEDIA / "lp_driving_d18.mp4")
    out = tmp / "out"
    cams = [{"id": "door", "source": str(door)}, {"id": "hall", "source": str(hall)},
            {"id": "gate", "source": rtsp_url}]
    for c in cams:
        c.update(events=str(out / f"{c['id']}.jsonl"), record=str(out / f"{c['id']}.mp4"))
    cfg = {"cameras": cams,
           "ray": {"camera_cpus": 0.25, "replica_cpus": 0.25, "max_restarts": 2, "max_batch_faces": 16,
                   "cameras": {"door": {"resources": {"site_a": 1}}, "hall": {"resources": {"site_b": 1}}}}}
    path = tmp / "cameras.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_serve_on_a_two_node_cluster_survives_a_killed_camera_actor(cluster, tmp_path):
    c, head_id, worker_id = cluster
    rtsp_file = need(MEDIA / "pyfeat_single_face.mp4")
    with RtspServer(tmp_path / "rtsp", [rtsp_file]) as rtsp:
        svc = Service(_config(tmp_path, rtsp.url(rtsp_file.name, loop=True)), c.address, tmp_path)
        try:
            _kill_door_mid_run(svc, head_id, worker_id)
        finally:
            out = svc.stop()
    assert svc.proc.returncode == 0, svc.err.read_text()[-3000:]
    assert {"[door]", "[hall]", "[gate]"} <= set(out.split())  # each camera's summary
    _check_outputs(tmp_path / "out")


def _kill_door_mid_run(svc: Service, head_id: str, worker_id: str) -> None:
    # enough frames for a confirmed track (min_hits) and so face events in the killed generation
    before = svc.wait("door's first frames", lambda: (s := svc.streams())["door"]["frames"] >= 8 and s, 150)
    assert before["door"]["state"] == "running" and before["door"]["frames"] < DOOR_FRAMES
    os.kill(before["door"]["pid"], signal.SIGKILL)  # a crash, not a clean stop
    after = svc.wait("door's actor restarted and analysing",
                     lambda: (s := svc.streams())["door"]["restarts"] == 1 and s["door"]["state"] == "running"
                     and s["gate"]["frames"] > 0 and s, 120)
    assert after["door"]["pid"] != before["door"]["pid"]
    # pinned by custom resource: door on the head (site_a, also after its restart), hall on
    # the worker (site_b); the unpinned gate went where Ray put it
    assert after["door"]["node_id"] == head_id and after["hall"]["node_id"] == worker_id
    assert {v["node_id"] for v in after.values()} == {head_id, worker_id}
    # the others went on meanwhile (hall may have reached its end)
    assert after["gate"]["restarts"] == after["hall"]["restarts"] == 0
    assert after["hall"]["frames"] > before["hall"]["frames"] or after["hall"]["frames"] == HALL_FRAMES
    svc.wait("both files analysed to their end",
             lambda: all(svc.streams()[cid]["state"] == "ended" for cid in ("door", "hall")), 120)
    frames = svc.streams()["gate"]["frames"]
    svc.wait("gate still analysing", lambda: svc.streams()["gate"]["frames"] > frames, 30)
    assert svc.get("/health")["cameras"]["gate"] == "running"
    assert 'uar_frames_total{camera="door"}' in svc.get("/metrics")


def _check_outputs(out: Path) -> None:
    for cid, n in (("hall", HALL_FRAMES), ("gate", None)):  # untouched: one whole log and video each
        ev = _events(out / f"{cid}.jsonl")
        assert ev[0]["event"] == "run_started" and ev[-1]["event"] == "run_ended"
        assert ev[-1]["frames"] == n if n else ev[-1]["frames"] > 0
        assert _frames(out / f"{cid}.mp4") == ev[-1]["frames"]
        assert not list(out.glob(f"{cid}.restart*"))
    # the killed generation's log is kept as it was (whole lines, no run_ended) ...
    first = _events(out / "door.jsonl")
    assert first[0]["event"] == "run_started" and "run_ended" not in {e["event"] for e in first}
    assert any(e["event"] == "face" for e in first)
    # ... and the restarted one resumed the file where the driver had got to, to its end
    seg = _events(out / "door.restart1.jsonl")
    assert [e["event"] for e in seg[:2]] == ["run_started", "stream_restored"]
    note = seg[1]
    assert note["reason"] == "camera actor restarted" and note["restarts"] == 1
    assert 0 < note["resumed_at_frame"] < DOOR_FRAMES
    left = DOOR_FRAMES - note["resumed_at_frame"]
    assert seg[0]["frame_count"] == left
    assert seg[-1]["event"] == "run_ended" and seg[-1]["frames"] == left and not seg[-1].get("error")
    assert _frames(out / "door.restart1.mp4") == left
