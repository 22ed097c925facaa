"""Live runs end to end: a real RTSP server on loopback (killed and restarted mid-stream), a
consumer slower than the camera, Ctrl-C/SIGTERM on the CLI, the embedding API."""
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from uar_stream import Analyzer, load_config
from uar_stream.backends import create_engine
from uar_stream.errors import SourceError
from uar_stream.pipeline.run import run
from uar_stream.pipeline.sinks import outputs_for

from tests.support.live import RtspServer, SlowEngine, make_tiny_model, read_video_frames

pytest.importorskip("aio_rtsp_toolkit.server")
CLIP = "lp_driving_d18.mp4"  # 1 face, 480x480, 216 frames at 30 fps


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("model") / "tiny")


def _analyzer(model_dir, delay_s=0.0, **sections):
    cfg = load_config({"model": {"path": str(model_dir)}, **sections})
    return Analyzer(cfg, engine=SlowEngine(create_engine(model_dir), delay_s) if delay_s else None)


def _run(an, source, output=None, events=None, show=False, **options):
    """``uar-stream run``'s loop with its sinks (no printed summary)."""
    sinks = outputs_for(an.config, output=output, events=events, show=show, summary=False)
    return run(an, source, sinks, **options)


def _events(path):
    lines = Path(path).read_text().splitlines()
    return [json.loads(line) for line in lines]  # every line must parse


def _uar_threads():
    return [t for t in threading.enumerate() if t.name.startswith("uar-")]


def _wait_for(cond, timeout_s, what):
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)


@pytest.mark.parametrize("pipelined", [True, False])
def test_file_every_frame_has_one_event_per_frame_and_drops_nothing(tmp_path, media, model_dir, pipelined):
    """A file under back-pressure (inference slower than reading) loses no frame."""
    with _analyzer(model_dir, delay_s=0.02 if pipelined else 0.0, events={"faces": "every_frame"}) as an:
        s = _run(an, str(media / "pyfeat_single_face.mp4"), tmp_path / "o.mp4", tmp_path / "e.jsonl",
                progress=False, pipelined=pipelined)
    ev = _events(tmp_path / "e.jsonl")
    faces = [e for e in ev if e["event"] == "face"]
    assert [e["frame"] for e in faces] == list(range(72))
    # one person, one id, given once the track is confirmed (tracking.min_hits frames)
    hits = an.config.tracking.min_hits
    assert all("track_id" not in e for e in faces[: hits - 1])
    assert len({e["track_id"] for e in faces[hits - 1:]}) == 1
    assert s.frames == 72 and s.dropped_frames == 0
    assert read_video_frames(tmp_path / "o.mp4") == (72, (640, 360))
    assert ev[0]["event"] == "run_started" and ev[-1]["event"] == "run_ended"
    assert ev[-1]["dropped_frames"] == 0 and ev[-1]["latency_ms_p95"] >= ev[-1]["latency_ms_p50"] > 0
    kinds = [e["event"] for e in ev]
    assert kinds.count("track_started") == kinds.count("track_ended") == 1
    assert _uar_threads() == []


@pytest.mark.slow
def test_rtsp_server_killed_and_restarted_mid_stream(tmp_path, media, model_dir):
    src_cfg = {"backoff_initial_s": 0.2, "backoff_max_s": 1.0, "reconnect_attempts": 20,
               "read_timeout_s": 2.0}
    ev_path, out = tmp_path / "e.jsonl", tmp_path / "o.mp4"
    with RtspServer(tmp_path / "srv", [media / CLIP]) as srv, \
            _analyzer(model_dir, events={"faces": "every_frame"}, source=src_cfg) as an:
        url = srv.url(CLIP, userinfo="admin:hunter2")

        def chaos():
            _wait_for(lambda: ev_path.exists() and ev_path.read_text().count('"event":"face"') >= 20, 30,
                      "no face events from the stream")
            srv.kill()
            time.sleep(1.0)
            srv.start()

        th = threading.Thread(target=chaos, daemon=True)
        th.start()
        s = _run(an, url, out, ev_path, progress=False, max_frames=90)
        th.join(timeout=30)
    ev = _events(ev_path)
    kinds = [e["event"] for e in ev]
    assert kinds[0] == "run_started" and kinds[-1] == "run_ended"
    lost, restored = kinds.index("stream_lost"), kinds.index("stream_restored")
    assert lost < restored
    # tracks do not span the gap: every track alive at the loss ends there
    assert "track_ended" in kinds[lost:restored]
    assert kinds.count("track_started") == kinds.count("track_ended") >= 2
    frames = [e["frame"] for e in ev if e["event"] == "face"]
    assert frames == sorted(set(frames))  # one event per frame, in order across the gap
    nxt = ev[restored]["next_frame"]
    assert any(f >= nxt for f in frames) and any(f < ev[lost]["last_frame"] + 1 for f in frames)
    assert ev[-1]["reconnects"] == 1 and ev[-1]["frames"] == s.frames == 90
    assert read_video_frames(out) == (90, (480, 480))
    text = ev_path.read_text()
    assert "hunter2" not in text and "admin" not in text and "://***@" in text


@pytest.mark.slow
def test_cli_exits_cleanly_when_reconnects_are_exhausted(tmp_path, media, model_dir):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"model:\n  path: {model_dir}\nsource:\n  backoff_initial_s: 0.2\n"
                   "  backoff_max_s: 0.4\n  reconnect_attempts: 2\n  read_timeout_s: 2.0\n")
    ev_path, out = tmp_path / "e.jsonl", tmp_path / "o.avi"
    with RtspServer(tmp_path / "srv", [media / CLIP]) as srv:
        p = subprocess.Popen([sys.executable, "-m", "uar_stream.cli.main", "run", "--config", str(cfg),
                              "--source", srv.url(CLIP, userinfo="admin:hunter2"), "--output", str(out),
                              "--events", str(ev_path), "--face-events", "every_frame"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
        try:
            _wait_for(lambda: ev_path.exists() and ev_path.read_text().count('"event":"face"') >= 10, 60,
                      "no face events from the stream")
            srv.kill()
            stdout, stderr = p.communicate(timeout=60)
        finally:
            p.kill()
    assert p.returncode == 2
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("uar-stream run: error: stream rtsp://***@127.0.0.1:")
    assert "not restored after 2 reconnect attempts" in last
    ev = _events(ev_path)
    kinds = [e["event"] for e in ev]
    assert kinds[-1] == "run_ended" and "stream_lost" in kinds and "stream_restored" not in kinds
    assert "not restored" in ev[-1]["error"]
    assert read_video_frames(out)[0] == ev[-1]["frames"] > 0
    assert all("hunter2" not in t for t in (stdout, stderr, ev_path.read_text()))


def _ages(results):
    """How far behind the live picture each result is (s): wall time of the result minus
    the wall time its frame was on air (stream position, from the first frame)."""
    # position 0 was on air at the earliest (captured - position): the least-delayed frame
    on_air0 = min(r.frame.captured_at - r.frame.stream_pos_s for r in results)
    return np.array([r.frame.captured_at + r.latency_ms / 1000 - (on_air0 + r.frame.stream_pos_s)
                     for r in results])


@pytest.mark.slow
def test_slow_consumer_on_a_live_source_keeps_latency_bounded(tmp_path, media, model_dir):
    """Inference (~6 fps here) slower than the camera (30 fps): newest_only drops stale
    frames and stays near real time; the synchronous reader falls further behind."""
    ages, dropped = {}, {}
    with RtspServer(tmp_path / "srv", [media / CLIP]) as srv, \
            _analyzer(model_dir, delay_s=0.15) as an:
        for pipelined in (True, False):
            results = []
            with an.stream(srv.url(CLIP), pipelined=pipelined) as stream:
                for r in stream:
                    results.append(r)
                    if len(results) == 24:
                        break
                dropped[pipelined] = stream.dropped
            ages[pipelined] = _ages(results[4:])  # skip FFmpeg's start-up burst
    assert dropped[True] > 24 and dropped[False] == 0
    assert ages[True].max() < 1.0
    assert ages[False][-1] > 1.5 and ages[False][-1] > 3 * ages[True][-4:].mean()
    assert _uar_threads() == []


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_mid_file_leaves_playable_video_and_complete_events(tmp_path, media, model_dir, sig):
    ev_path, out = tmp_path / "e.jsonl", tmp_path / "o.mp4"
    p = subprocess.Popen([sys.executable, "-m", "uar_stream.cli.main", "run", "--model", str(model_dir),
                          "--source", str(media / "lp_driving_d3.mp4"), "--output", str(out),
                          "--events", str(ev_path), "--face-events", "every_frame"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: ev_path.exists() and ev_path.read_text().count('"event":"face"') >= 15, 60,
                  "the run produced no face events")
        p.send_signal(sig)
        stdout, _ = p.communicate(timeout=30)
    finally:
        p.kill()
    assert p.returncode == 130 and stdout.startswith("interrupted:")
    ev = _events(ev_path)
    assert ev[-1]["event"] == "run_ended" and ev[-1]["interrupted"] is True
    n, size = read_video_frames(out)
    assert 15 <= n == ev[-1]["frames"] < 354 and size == (512, 512)


def test_background_stream_for_an_app_and_release_on_close(media, model_dir):
    got, leftovers = [], []
    an = _analyzer(model_dir)
    handle = an.run_in_background(str(media / "pyfeat_single_face.mp4"), got.append,
                                  on_events=leftovers.extend)
    assert handle.join(timeout=60) and handle.error is None
    assert [r.index for r in got] == list(range(72))
    assert all(r.image.shape == (360, 640, 3) and len(r.faces) == 1 for r in got)
    assert next(e for r in got for e in r.events).kind == "track_started"  # after min_hits frames
    assert [e.kind for e in leftovers] == ["track_ended"]
    # a frame-by-frame call from the app's own thread works beside a running stream
    handle = an.run_in_background(str(media / "lp_driving_d3.mp4"), lambda r: time.sleep(0.01))
    frame = got[10].image
    assert len(an.analyze(frame)) == 1
    an.close()  # stops the stream and its threads, releases the source
    assert handle.join(timeout=10) and not handle.running
    _wait_for(lambda: _uar_threads() == [], 10, "stream threads still alive")


def test_bad_source_raises_before_outputs_are_created(tmp_path, model_dir):
    with _analyzer(model_dir) as an:
        with pytest.raises(SourceError, match="source not found"):
            _run(an, str(tmp_path / "missing.mp4"), tmp_path / "o.mp4", tmp_path / "e.jsonl", progress=False)
    assert not (tmp_path / "e.jsonl").exists()


def test_show_without_a_display_warns_and_runs(tmp_path, media, model_dir, monkeypatch, caplog):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with _analyzer(model_dir) as an:
        s = _run(an, str(media / "pyfeat_single_face.mp4"), show=True, progress=False, max_frames=10)
    assert s.frames == 10
    assert any("--show: no display" in r.getMessage() for r in caplog.records)
