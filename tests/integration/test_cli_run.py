"""The user's first path, end to end: `uar-stream run` on real shared media, and bad input."""
import json
import os
import shutil
import subprocess
import sys

import cv2
import pytest

from tests.support.paths import ROOT

pytestmark = pytest.mark.slow


def run_cli(*args, timeout=300):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "uar_stream.cli.main", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, env=env)


def test_single_face_video_end_to_end(media, default_model, tmp_path):
    out, ev = tmp_path / "out.mp4", tmp_path / "events.jsonl"
    r = run_cli("run", "--source", str(media / "pyfeat_single_face.mp4"), "--output", str(out),
                "--events", str(ev), "--face-events", "every_frame", "--model", str(default_model))
    assert r.returncode == 0, r.stderr
    assert "done: 72 frames" in r.stdout
    cap = cv2.VideoCapture(str(out))
    n = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        assert frame.shape == (360, 640, 3)
        n += 1
    assert n == 72
    events = [json.loads(line) for line in ev.read_text().splitlines()]
    assert events[0]["event"] == "run_started" and events[-1]["event"] == "run_ended"
    faces = [e for e in events if e["event"] == "face"]
    assert sorted(e["frame"] for e in faces) == list(range(72))
    for e in faces:  # the documented face-event schema
        assert {"time", "frame", "t", "face", "box", "label", "confidence", "route", "aleatoric",
                "epistemic", "total", "probs"} <= set(e)
        assert e["route"] in ("confident", "ambiguous", "out_of_distribution")
        assert abs(sum(e["probs"].values()) - 1) < 1e-2
        assert e["epistemic"] >= 0 and e["aleatoric"] >= 0
    assert events[0]["backend"] and events[0]["model_id"] and events[0]["config_hash"]
    end = events[-1]
    assert end["frames"] == 72 and end["faces"] == 72 and sum(end["routes"].values()) == 72


@pytest.mark.parametrize("args, message", [
    (["--source", "/nonexistent/clip.mp4"], "source not found: /nonexistent/clip.mp4"),
    (["--source", "{notvideo}"], "video"),
    (["--source", "{video}", "--output", "/etc/hostname/out.mp4"],
     "cannot write output /etc/hostname/out.mp4"),
    (["--source", "{video}", "--config", "{badcfg}"], "routing.tau_epistemic: 'abc' is not a number"),
    (["--source", "{video}", "--model", "{badmodel}"], "sha256 differs from the manifest"),
    (["--source", "{video}", "--backend", "magic"], "engine.backend: 'magic' is not allowed"),
])
def test_bad_input_is_one_line_and_nonzero(media, default_model, tmp_path, args, message):
    notvideo = tmp_path / "notes.mp4"
    notvideo.write_text("this is not a video\n")
    badcfg = tmp_path / "bad.yaml"
    badcfg.write_text("routing:\n  tau_epistemic: abc\n")
    badmodel = shutil.copytree(default_model, tmp_path / "badmodel")
    with open(badmodel / "member_00.safetensors", "r+b") as f:
        f.seek(100)
        f.write(b"garbage!")
    subst = {"{notvideo}": str(notvideo), "{badcfg}": str(badcfg), "{badmodel}": str(badmodel),
             "{video}": str(media / "pyfeat_single_face.mp4")}
    args = [subst.get(a, a) for a in args]
    r = run_cli("run", *args, "--events", str(tmp_path / "ev.jsonl"), timeout=120)
    assert r.returncode != 0
    err_lines = [ln for ln in r.stderr.splitlines() if ln.startswith("uar-stream")]
    assert len(err_lines) == 1 and message in err_lines[0], r.stderr
    assert err_lines[0].startswith("uar-stream run: error: ")
    assert "Traceback" not in r.stderr
