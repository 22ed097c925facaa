"""tools/commit_members.py: finished members are committed at once, the member in progress
when training ends, and nothing else that is staged in the checkout."""
import subprocess
import sys
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[3] / "tools" / "commit_members.py"


def _git(repo, *args):
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout


@pytest.fixture
def repo(tmp_path):
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", "init")
    _git(tmp_path, "config", "user.email", "t@t")
    _git(tmp_path, "config", "user.name", "t")
    return tmp_path


def test_members_then_progress_are_committed_and_nothing_else(repo):
    work = repo / "engines" / "next" / "work"
    (work / "member_00").mkdir(parents=True)
    (work / "member_01").mkdir()
    (work / "config.json").write_text("{}")
    (work / "member_00" / "final.safetensors").write_bytes(b"weights")
    (work / "member_00" / "metrics.json").write_text("{}")
    (work / "member_01" / "checkpoint.safetensors").write_bytes(b"ckpt")
    (work / "train.log").write_text("log")
    (repo / "someone_else.txt").write_text("staged by another engineer")
    _git(repo, "add", "someone_else.txt")
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()  # a training process that has already exited: the watcher's final pass

    out = repo / "engines" / "next"
    r = subprocess.run([sys.executable, str(TOOL), "--work", str(work), "--out", str(out),
                        "--pid", str(done.pid), "--log", str(work / "train.log"), "--interval", "0.1"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    log = _git(repo, "log", "--format=%s", "--name-only")
    assert "member_00 trained" in log and "training state at training exit" in log
    committed = set(_git(repo, "ls-files").split())
    assert {"engines/next/work/member_00/final.safetensors", "engines/next/work/member_00/metrics.json",
            "engines/next/work/config.json", "engines/next/work/member_01/checkpoint.safetensors",
            "engines/next/work/train.log"} <= committed
    # The other engineer's staged file is still staged, not swept into these commits.
    assert "someone_else.txt" not in _git(repo, "log", "--name-only", "--format=")
    assert "A  someone_else.txt" in _git(repo, "status", "--short")


def test_outside_a_checkout_is_a_one_line_error(tmp_path):
    r = subprocess.run([sys.executable, str(TOOL), "--work", str(tmp_path / "w"), "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "is not inside a git checkout" in r.stderr
