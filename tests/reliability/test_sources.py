"""Bad sources through `uar-stream run`: missing, empty, truncated and mislabelled media,
directories, dead cameras and dead stream URLs with and without credentials. A source that
cannot be read fails with one line before any output exists; a mislabelled file that can be
read is read by its content (as FFmpeg does) and its outputs are valid; no credential of a URL
appears anywhere in what the user sees."""
from __future__ import annotations

import logging
import shutil
import socket

import pytest

from tests.reliability.support import check_answer, cli, events_valid, video_valid


def _closed_port() -> int:
    with socket.socket() as s:  # bound, never listening: connections are refused at once
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PORT = _closed_port()


def _make(kind: str, tmp, media):
    """Create the source file for ``kind``; returns its spec."""
    clip, photo = media / "pyfeat_single_face.mp4", media / "faceapi_happy.jpg"
    makers = {
        "missing": lambda p: None,
        "empty .mp4": lambda p: p.write_bytes(b""),
        "truncated .mp4 (3 KB of 204)": lambda p: p.write_bytes(clip.read_bytes()[:3000]),
        "text named .mp4": lambda p: p.write_text("not a video\n"),
        "empty .jpg": lambda p: p.write_bytes(b""),
        "text named .png": lambda p: p.write_text("not an image\n"),
        "truncated .jpg header": lambda p: p.write_bytes(photo.read_bytes()[:200]),
        "jpg named .mp4": lambda p: shutil.copy(photo, p),
        "mp4 named .jpg": lambda p: shutil.copy(clip, p),
        "truncated .jpg (half)": lambda p: p.write_bytes(photo.read_bytes()[:15000]),
        "directory": lambda p: p.mkdir(),
        "truncated .avi (60 %, no index)": lambda p: _cut_avi(clip, p),
    }
    suffix = {"missing": ".mp4", "directory": ""}.get(kind, "." + kind.split(".")[-1].split()[0])
    path = tmp / f"src{suffix}"
    makers[kind](path)
    return str(path)


FILES = [  # (kind, exit code, message regex)
    ("missing", 2, r"source not found: .*src\.mp4$"),
    ("empty .mp4", 2, r"cannot open video .*src\.mp4$"),
    ("truncated .mp4 (3 KB of 204)", 2, r"cannot (open|decode) video .*src\.mp4"),
    ("text named .mp4", 2, r"cannot open video .*src\.mp4$"),
    ("empty .jpg", 2, r"cannot read image .*src\.jpg: not a supported image file$"),
    ("text named .png", 2, r"cannot read image .*src\.png: not a supported image file$"),
    ("truncated .jpg header", 2, r"cannot read image .*src\.jpg"),
    ("directory", 2, r"source is a directory, not a video or image: "),
    ("jpg named .mp4", 0, None),
    ("mp4 named .jpg", 0, None),
    ("truncated .jpg (half)", 0, None),
    ("truncated .avi (60 %, no index)", 0, None),  # read to the cut, with a warning
]


def _cut_avi(clip, path):
    """An MJPG avi of the clip cut at 60 %: FFmpeg reads it to the cut (no index needed)."""
    import cv2

    cap, full = cv2.VideoCapture(str(clip)), path.with_name("full.avi")
    w = cv2.VideoWriter(str(full), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (640, 360))
    while (got := cap.read())[0]:
        w.write(got[1])
    w.release()
    cap.release()
    data = full.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.6)])
    full.unlink()


@pytest.mark.parametrize("kind,code,message", FILES, ids=[f[0] for f in FILES])
def test_bad_media_file(tmp_path, media, tiny_model, caplog, kind, code, message):
    src = _make(kind, tmp_path, media)
    out, ev = tmp_path / "out" / "o.mp4", tmp_path / "out" / "e.jsonl"
    limit = [] if "avi" in kind else ["--max-frames", "5"]
    with caplog.at_level(logging.WARNING, logger="uar_stream"):
        ans = cli(["run", "--model", str(tiny_model), "--source", src, "--output", str(out),
                   "--events", str(ev), "--no-progress", *limit])
    check_answer(f"source: {kind}", ans, code, message)
    if "avi" in kind:
        assert "ended after" in caplog.text and "of the 72 frames its header announces" in caplog.text
    if code:
        assert not out.exists() and not ev.exists()  # a bad source touches no output
    else:
        recs = events_valid(ev)
        assert video_valid(out) == recs[-1]["frames"] >= 1


LIVE = [  # (case, spec, message regex); every one must fail fast and show no secret
    ("dead camera index", "9", r"cannot open camera 9$"),
    ("dead rtsp, no credentials", f"rtsp://127.0.0.1:{PORT}/cam", rf"cannot open stream rtsp://127\.0\.0\.1:{PORT}/cam"),
    ("dead rtsp, user:password", f"rtsp://admin:hunter2@127.0.0.1:{PORT}/cam",
     rf"cannot open stream rtsp://\*\*\*@127\.0\.0\.1:{PORT}/cam"),
    ("dead rtsp, password with raw @", f"rtsp://admin:hun@ter2@127.0.0.1:{PORT}/cam",
     r"cannot open stream rtsp://\*\*\*@127\.0\.0\.1"),
    ("dead rtsp, password with raw /", f"rtsp://admin:hun/ter2@127.0.0.1:{PORT}/cam",
     r"cannot open stream rtsp://\*\*\*@127\.0\.0\.1"),
    ("dead rtsp, percent-encoded @ / : # ?", f"rtsp://ad%3Amin:h%40u%2Fn%23t%3Fer2@127.0.0.1:{PORT}/cam",
     r"cannot open stream rtsp://\*\*\*@127\.0\.0\.1"),
    ("dead http stream with credentials", f"http://admin:hunter2@127.0.0.1:{PORT}/live.m3u8",
     r"cannot open stream http://\*\*\*@127\.0\.0\.1"),
    ("unknown URL scheme", "nosuch://127.0.0.1/x", r"cannot open stream nosuch://127\.0\.0\.1/x"),
    ("empty source", "", r"empty source"),
]


@pytest.mark.parametrize("case,spec,message", LIVE, ids=[c[0] for c in LIVE])
def test_dead_camera_or_stream(tmp_path, tiny_model, case, spec, message):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"model:\n  path: {tiny_model}\nsource:\n  open_timeout_s: 2.0\n")
    ev = tmp_path / "e.jsonl"
    ans = cli(["run", "--config", str(cfg), "--source", spec, "--events", str(ev), "--no-progress"])
    check_answer(f"source: {case}", ans, 2, message)
    assert not ev.exists()
    for secret in ("hunter2", "hun@ter2", "h%40u", "ter2", "admin", "ad%3Amin"):
        assert secret not in ans.stderr + ans.stdout
