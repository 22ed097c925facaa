"""`uar-stream run` is quiet by default: third-party start-up noise only under --verbose."""
import os
import re
import subprocess
import sys

import pytest

from tests.support.paths import ROOT

pytestmark = pytest.mark.slow

#: What mediapipe/TFLite/absl/protobuf and our engine choice print when nobody hides them.
NOISE = {
    "xnnpack": r"^INFO: Created TensorFlow Lite XNNPACK delegate",
    "absl": r"^WARNING: All log messages before absl::InitializeLog\(\)",
    "feedback manager": r"inference_feedback_manager\.cc:\d+\] Feedback manager",
    "protobuf": r"GetPrototype\(\) is deprecated",
    "engine choice": r"engine: backend auto chose",
}


def _run(media, model, tmp_path, *extra):
    out, ev = tmp_path / "a.mp4", tmp_path / "e.jsonl"
    r = subprocess.run([sys.executable, "-m", "uar_stream.cli.main", "run", *extra,
                        "--source", str(media / "pyfeat_single_face.mp4"), "--output", str(out),
                        "--events", str(ev), "--model", str(model)],
                       capture_output=True, text=True, timeout=300, cwd=ROOT,
                       env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert r.returncode == 0, r.stderr
    assert "done: 72 frames" in r.stdout  # the summary goes to stdout
    return r.stderr.splitlines()


def _found(lines):
    return {name for name, p in NOISE.items() if any(re.search(p, ln) for ln in lines)}


def test_default_stderr_has_no_third_party_noise_and_no_info(media, default_model, tmp_path):
    lines = _run(media, default_model, tmp_path)
    assert _found(lines) == set(), lines
    assert not [ln for ln in lines if ln.startswith(("INFO ", "DEBUG "))], lines


def test_verbose_lets_the_noise_through(media, default_model, tmp_path):
    lines = _run(media, default_model, tmp_path, "--verbose")
    assert _found(lines) == set(NOISE), lines
