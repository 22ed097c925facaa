"""Outputs that cannot be written: full disks (a small tmpfs where `mount` is allowed, else
/dev/full), read-only file systems, folders where files should be, missing folders. A write
failure on any output is one line naming the file and the cause, exit 2; every other output
is still finalised (the video plays, the events file is valid JSONL to its last line and ends
with run_ended when its own disk has room); `done`/exit 0 only when every output is complete."""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from tests.reliability.support import (
    SmallDisk,
    check_answer,
    cli,
    events_valid,
    valid_or_absent,
    video_valid,
)

CLIP = "pyfeat_single_face.mp4"  # 72 frames, one face, 640x360
ENOSPC, EROFS = ": No space left on device$", ": Read-only file system$"


@pytest.fixture
def disk(tmp_path):
    d = SmallDisk(tmp_path / "small")
    yield d
    d.unmount()


def _run(tiny_model, media, tmp_path, *, output=None, events=None, summary=None, extra=()):
    args = ["run", "--model", str(tiny_model), "--source", str(media / CLIP), "--no-progress",
            "--face-events", "every_frame", *extra]
    for flag, value in (("--output", output), ("--events", events), ("--summary-json", summary)):
        if value is not None:
            args += [flag, str(value)]
    return cli(args, cwd=tmp_path)


# (case, which output is on the small disk, its size and free KiB, message)
FULL = [
    ("video: 0 bytes free", "output", 16, 0, r"cannot write output .*o\.mp4" + ENOSPC),
    ("video: 8 KB free", "output", 64, 8, r"cannot write output .*o\.mp4" + ENOSPC),
    ("events: 0 bytes free", "events", 16, 0, r"cannot write events file .*e\.jsonl" + ENOSPC),
    ("events: 16 KB free (fills mid-run)", "events", 64, 16,
     r"cannot write events file .*e\.jsonl" + ENOSPC),
    ("summary json: 0 bytes free", "summary", 16, 0, r"cannot write summary .*s\.json" + ENOSPC),
]


@pytest.mark.parametrize("case,where,size_kb,free_kb,message", FULL, ids=[c[0] for c in FULL])
def test_full_disk(tmp_path, media, tiny_model, disk, case, where, size_kb, free_kb, message):
    if not disk.mount(size_kb, free_kb):
        pytest.skip("mount not allowed here: the full-disk cases ran on /dev/full only")
    paths = {"output": tmp_path / "o.mp4", "events": tmp_path / "e.jsonl", "summary": tmp_path / "s.json"}
    paths[where] = disk.path / paths[where].name
    ans = _run(tiny_model, media, tmp_path, **paths)
    check_answer(f"full disk (tmpfs): {case}", ans, 2, message)
    assert not ans.stdout.startswith("done")
    if where != "events":  # the log on a disk with room is complete and says what failed
        recs = events_valid(paths["events"])
        if where == "output":
            assert "No space left on device" in recs[-1]["error"]
    else:  # the full log holds only whole lines, whatever was cut
        assert not paths["events"].exists() or events_valid(paths["events"], complete=False) is not None
    if where != "output":
        valid_or_absent(paths["output"])  # played to its last frame, or never started


DEVICES = [  # /dev/full: every write fails with ENOSPC (runs where mount is refused too)
    ("events on /dev/full", "events", r"cannot write events file /dev/full: No space left on device$"),
    ("summary json on /dev/full", "summary", r"cannot write summary /dev/full: No space left on device$"),
]


@pytest.mark.parametrize("case,where,message", DEVICES, ids=[c[0] for c in DEVICES])
def test_dev_full(tmp_path, media, tiny_model, case, where, message):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    paths = {"output": tmp_path / "o.mp4", "events": tmp_path / "e.jsonl", "summary": tmp_path / "s.json"}
    paths[where] = Path("/dev/full")
    ans = _run(tiny_model, media, tmp_path, **paths)
    check_answer(f"full disk: {case}", ans, 2, message)
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)  # written in place, never replaced
    valid_or_absent(paths["output"])
    if where == "summary":
        recs = events_valid(paths["events"])
        assert recs[-1]["frames"] == video_valid(paths["output"]) == 72


RO = [
    ("video in a read-only file system", "output", r"cannot write output .*o\.mp4" + EROFS),
    ("events in a read-only file system", "events", r"cannot write events file .*e\.jsonl" + EROFS),
    ("summary json in a read-only file system", "summary", r"cannot write summary .*s\.json" + EROFS),
    ("video in a missing folder on a read-only fs", "output/new",
     r"cannot create output folder .*new: Read-only file system$"),
]


@pytest.mark.parametrize("case,where,message", RO, ids=[c[0] for c in RO])
def test_read_only(tmp_path, media, tiny_model, disk, case, where, message):
    if not disk.mount(16, read_only=True):
        if os.geteuid() == 0:
            pytest.skip("mount not allowed and root ignores file modes: no read-only case can run")
        disk.path.chmod(0o555)  # a read-only folder instead: "Permission denied"
        message = message.replace(EROFS, ": Permission denied$")
    key, _, sub = where.partition("/")
    base = disk.path / sub if sub else disk.path
    paths = {"output": tmp_path / "o.mp4", "events": tmp_path / "e.jsonl", "summary": tmp_path / "s.json"}
    paths[key] = base / paths[key].name
    ans = _run(tiny_model, media, tmp_path, **paths)
    check_answer(f"read-only: {case}", ans, 2, message)
    for k, p in paths.items():  # a failed open stops the run before analysis: nothing half-made
        if k != key and k != "summary":
            assert not p.exists() or (k == "events" and events_valid(p))


def _file(tmp_path):
    f = tmp_path / "a_file"
    f.write_text("x")
    return f


PLACES = [  # (case, output flag, path maker, message)
    ("video: parent is a file", "output", lambda t: _file(t) / "o.mp4",
     r"cannot write output .*: Not a directory$"),
    ("video: path is a folder", "output", lambda t: t, r"cannot write output .*: Is a directory$"),
    ("video: unknown suffix", "output", lambda t: t / "o.txt", r"cannot write video .*o\.txt with codec"),
    ("events: parent is a file", "events", lambda t: _file(t) / "e.jsonl",
     r"cannot (create the folder of events file|write events file) .*: (Not a directory|File exists)$"),
    ("events: path is a folder", "events", lambda t: t, r"cannot write events file .*: Is a directory$"),
    ("summary json: parent is a file", "summary", lambda t: _file(t) / "s.json",
     r"cannot create output folder .*: Not a directory$"),
    ("summary json: path is a folder", "summary", lambda t: t, r"cannot write summary .*: Is a directory$"),
]


@pytest.mark.parametrize("case,flag,make,message", PLACES, ids=[c[0] for c in PLACES])
def test_output_in_the_wrong_place(tmp_path, media, tiny_model, case, flag, make, message):
    ans = _run(tiny_model, media, tmp_path, **{flag: make(tmp_path)})
    check_answer(f"output place: {case}", ans, 2, message)


def test_missing_folders_are_created(tmp_path, media, tiny_model):
    deep = tmp_path / "a" / "b"
    ans = _run(tiny_model, media, tmp_path, output=deep / "v" / "o.mp4", events=deep / "e" / "e.jsonl",
               summary=deep / "s" / "s.json", extra=["--max-frames", "10"])
    check_answer("output place: every folder missing", ans, 0, None)
    assert ans.stdout.startswith("done")
    recs = events_valid(deep / "e" / "e.jsonl")
    assert video_valid(deep / "v" / "o.mp4") == recs[-1]["frames"] == 10
    assert json.loads((deep / "s" / "s.json").read_text())["frames"] == 10


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_event_log_rotation(tmp_path, media, tiny_model, compress):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"model:\n  path: {tiny_model}\nevents:\n  max_mb: 0.004\n  keep: 3\n"
                   f"  compress: {str(compress).lower()}\n")
    ev = tmp_path / "log" / "cam.jsonl"
    ans = cli(["run", "--config", str(cfg), "--source", str(media / CLIP), "--events", str(ev),
               "--face-events", "every_frame", "--summary-json", str(tmp_path / "s.json"), "--no-progress"])
    check_answer(f"events rotation (max_mb 0.004, keep 3, {'gzip' if compress else 'plain'})", ans, 0, None)
    suffix = ".jsonl.gz" if compress else ".jsonl"
    rotated = sorted(p for p in ev.parent.iterdir() if p.name != ev.name)
    assert len(rotated) == 3 and all(p.name.endswith(suffix) for p in rotated)  # keep: 3
    for p in rotated:  # each valid on its own, whole lines, under the size limit
        assert events_valid(p, complete=False) and os.path.getsize(p) <= 4200 or compress
    end = events_valid(ev, complete=False)[-1]
    assert end["event"] == "run_ended" and end["rotated"] == [p.name for p in rotated]
    assert json.loads((tmp_path / "s.json").read_text())["rotated"] == [str(p) for p in rotated]
    assert "+ 3 rotated" in ans.stdout
