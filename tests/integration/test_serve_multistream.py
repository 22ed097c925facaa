"""MultiStream: several cameras, one engine batched across streams (Python API, real videos and
a real RTSP server on loopback; the tiny model keeps it fast, the pipeline is real)."""
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from uar_stream.flow import EnsembleOutput
from uar_stream.serve import CrossStreamBatcher, MultiStream, load_serve_config
from uar_stream.serve.multistream import CameraError

from tests.support.live import RtspServer, make_tiny_model

CLIP = "lp_driving_d18.mp4"  # 1 face, 216 frames
SHORT = "pyfeat_single_face.mp4"  # 1 face, 72 frames


class RecordingEngine:
    """Row i of the output carries the crop's own value, so each request can check its rows."""

    name, members, num_classes = "fake", 2, 8

    def __init__(self, delay_s=0.0):
        self.sizes, self.delay_s = [], delay_s

    def infer(self, batch):
        self.sizes.append(len(batch))
        time.sleep(self.delay_s)
        v = batch.reshape(len(batch), -1)[:, 0].astype(np.float32)
        return EnsembleOutput(np.tile(v[:, None], (1, 8)), v, v, v, np.zeros((len(v), 2, 8), np.float32))


def test_batcher_fills_across_cameras_and_returns_each_its_own_rows():
    eng = RecordingEngine(delay_s=0.01)
    b = CrossStreamBatcher(eng, max_batch=64, timeout_ms=50)
    cams = [f"c{i}" for i in range(4)]
    for c in cams:
        b.register(c)
    got = {}

    def camera(i):
        rows = []
        for k in range(10):
            value = i * 100 + k
            out = b.submit(cams[i], np.full((2, 1, 4, 4), value, np.float32)).result(timeout=10)
            rows.append(out.total.tolist())
        got[i] = rows

    threads = [threading.Thread(target=camera, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    b.close()
    for i in range(4):  # every request got exactly its own two rows, in order
        assert got[i] == [[i * 100 + k] * 2 for k in range(10)]
    s = b.stats()
    assert s.faces == 80 and s.requests == 40
    # every camera waits on its request, so a batch fires when all four have one: > 1 camera per call
    assert s.fill > 2 and s.max_fill == 8


def test_batcher_fires_on_the_timeout_and_max_batch_and_takes_turns():
    eng = RecordingEngine()
    b = CrossStreamBatcher(eng, max_batch=3, timeout_ms=30)
    for c in ("a", "b"):
        b.register(c)
    t0 = time.perf_counter()
    b.submit("a", np.zeros((1, 1, 4, 4), np.float32)).result(timeout=5)  # b never submits: the timeout fires
    assert time.perf_counter() - t0 >= 0.025
    # a full queue: at most max_batch crops per call, camera b not starved behind a's backlog
    futs = [b.submit("a", np.full((1, 1, 4, 4), k, np.float32)) for k in range(6)]
    fb = b.submit("b", np.full((1, 1, 4, 4), 99, np.float32))
    assert fb.result(timeout=5).total.tolist() == [99]
    assert [f.result(timeout=5).total.tolist() for f in futs] == [[k] for k in range(6)]
    b.close()
    assert max(eng.sizes) <= 3
    # b's request (queued after six of a's) went out in the first or second batch, not the last
    assert b.stats().calls >= 3


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("model") / "tiny")


def _events(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def _wait_for(cond, timeout_s, what):
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(what() if callable(what) else what)
        time.sleep(0.05)


def test_four_file_cameras_every_frame_in_order_one_engine_batched(tmp_path, media, model_dir):
    cams = [{"id": f"cam{i}", "source": str(media / SHORT), "events": str(tmp_path / f"cam{i}.jsonl")}
            for i in range(4)]
    cfg = load_serve_config({"model": {"path": str(model_dir)}, "events": {"faces": "every_frame"},
                             "serve": {"max_batch": 16, "batch_timeout_ms": 20}, "cameras": cams})
    seen = {c["id"]: [] for c in cams}
    with MultiStream(cfg, start=False) as ms:
        sub = ms.subscribe_results(maxsize=1000)
        for c in cfg.cameras:
            ms.add(c)
        with pytest.raises(CameraError, match="exists already"):
            ms.add({"id": "cam0", "source": str(media / SHORT)})
        _wait_for(lambda: all(c.state == "ended" for c in ms.cameras()), 90, "cameras did not finish")
        for r in sub.drain():
            seen[r.camera].append(r.result.index)
        stats = ms.stats()
    for cid, idx in seen.items():
        assert idx == list(range(72)), cid  # files: every frame, in frame order, to its own camera
        ev = _events(tmp_path / f"{cid}.jsonl")
        assert ev[0]["event"] == "run_started" and ev[-1]["event"] == "run_ended"
        assert [e["frame"] for e in ev if e["event"] == "face"] == list(range(72))
    assert stats.faces == 4 * 72
    assert stats.fill > 1.0  # crops of several cameras share engine calls


@pytest.mark.slow
def test_rtsp_camera_killed_reconnects_another_fails_alone_the_file_keeps_running(tmp_path, media, model_dir):
    """Kill the RTSP server: `door` (reconnects) comes back, `fragile` (no reconnects) fails
    alone with run_ended in its log, the looped file camera never stops."""
    with RtspServer(tmp_path / "srv", [media / CLIP]) as srv:
        url = srv.url(CLIP, userinfo="admin:hunter2")
        live = {"analyzer": {"source": {"backoff_initial_s": 0.2, "backoff_max_s": 0.5,
                                        "reconnect_attempts": 30, "read_timeout_s": 2.0}}}
        cfg = load_serve_config({"model": {"path": str(model_dir)}, "cameras": [
            {"id": "door", "source": url, "events": str(tmp_path / "door.jsonl"), **live},
            {"id": "fragile", "source": url, "events": str(tmp_path / "fragile.jsonl"),
             "analyzer": {"source": {"reconnect_attempts": 0, "read_timeout_s": 2.0}}},
            {"id": "clip", "source": str(media / CLIP), "loop": True, "realtime": True}]})
        with MultiStream(cfg) as ms:
            door, fragile, clip = (ms.get(c) for c in ("door", "fragile", "clip"))
            _wait_for(lambda: all(c.view.frames >= 10 for c in (door, fragile, clip)), 60,
                      lambda: f"no frames: {[c.status() for c in (door, fragile, clip)]}")
            srv.kill()
            _wait_for(lambda: door.state == "reconnecting", 15, "door did not notice the loss")
            _wait_for(lambda: fragile.state == "failed", 15, "fragile did not fail")
            before = clip.view.frames
            time.sleep(1.0)
            assert clip.view.frames > before + 10 and clip.state == "running"
            srv.start()
            _wait_for(lambda: door.state == "running" and door.stream.reader.reconnects == 1, 30,
                      "door did not come back")
            frames = door.view.frames
            _wait_for(lambda: door.view.frames > frames + 10, 20, "no frames after the reconnect")
            status = door.status()
    assert status["reconnects"] == 1 and "hunter2" not in json.dumps(status)
    door_ev = [e["event"] for e in _events(tmp_path / "door.jsonl")]
    assert door_ev.index("stream_lost") < door_ev.index("stream_restored")
    assert door_ev[-1] == "run_ended"
    frag = _events(tmp_path / "fragile.jsonl")
    assert frag[-1]["event"] == "run_ended" and "not restored" in frag[-1]["error"]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (a disk that is always full)")
def test_a_camera_whose_disk_is_full_fails_alone(tmp_path, media, model_dir):
    cfg = load_serve_config({"model": {"path": str(model_dir)}, "cameras": [
        {"id": "full", "source": str(media / SHORT), "events": "/dev/full"},
        {"id": "ok", "source": str(media / CLIP), "loop": True, "realtime": True}]})
    with MultiStream(cfg) as ms:
        full, ok = ms.get("full"), ms.get("ok")
        _wait_for(lambda: full.state == "failed", 30, lambda: f"full camera: {full.status()}")
        assert "No space left on device" in full.error and "\n" not in full.error
        frames = ok.view.frames
        _wait_for(lambda: ok.view.frames > frames + 10, 20, "the other camera stopped")
        assert ok.state == "running"
        assert ms.get("full").status()["state"] == "failed"


def test_a_looped_file_keeps_its_clock_and_a_realtime_one_keeps_its_pace(media):
    from uar_stream.config import SourceConfig
    from uar_stream.serve.sources import PacedLoopSource

    src = PacedLoopSource(str(media / SHORT), SourceConfig(), loop=True, realtime=False)
    ts = [src.read().timestamp_s for _ in range(100)]  # 72 frames: one loop and a bit
    src.close()
    assert all(b > a for a, b in zip(ts[:-1], ts[1:], strict=True))
    assert src.frame_count == 0 and not src.is_live
    paced = PacedLoopSource(str(media / SHORT), SourceConfig(), loop=False, realtime=True)
    t0 = time.perf_counter()
    for _ in range(16):
        paced.read()
    took = time.perf_counter() - t0
    assert took >= 15 / paced.fps * 0.95  # no faster than the clip's frame rate
    assert not paced.is_live  # a file: it ends at its end, it is not "reconnected"
    paced.close()
