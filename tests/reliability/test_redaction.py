"""Credentials in URLs are hidden however they are written, wherever text reaches the user:
the redact() table, log lines (a filter on the CLI's handlers), and the error in run_ended and
in the summary JSON."""
from __future__ import annotations

import json
import logging

import pytest

from uar_stream.flow import RunSummary, StreamInfo
from uar_stream.pipeline.sinks.events import EventLogSink
from uar_stream.pipeline.sinks.summary import SummarySink
from uar_stream.pipeline.sources import redact

from tests.reliability.support import ROWS

URLS = [  # (how the password is written, URL, redacted, secrets that must be gone)
    ("plain user:password", "rtsp://admin:hunter2@cam.local:554/s1", "rtsp://***@cam.local:554/s1",
     ["admin", "hunter2"]),
    ("user only", "rtsp://admin@cam.local/s1", "rtsp://***@cam.local/s1", ["admin"]),
    ("raw @ in the password", "rtsp://admin:p@ssW0rd@cam.local/s1", "rtsp://***@cam.local/s1", ["ssW0rd"]),
    ("raw / in the password", "rtsp://admin:pa/ss@cam.local:554/s1", "rtsp://***@cam.local:554/s1",
     ["pa/ss"]),
    ("raw : in the password", "rtsp://admin:pa:ss@cam.local/s1", "rtsp://***@cam.local/s1", ["pa:ss"]),
    ("raw # and ? in the password", "rtsp://admin:p#a?ss@cam.local/s1", "rtsp://***@cam.local/s1", ["p#a"]),
    ("percent-encoded @ / : # ?", "rtsp://ad%3Amin:p%40a%2Fs%23s%3F@cam.local/s1", "rtsp://***@cam.local/s1",
     ["p%40a", "ad%3Amin"]),
    ("empty password", "rtsp://admin:@cam.local/s1", "rtsp://***@cam.local/s1", ["admin"]),
    ("http(s) stream", "https://u:secret@cdn.example/live.m3u8", "https://***@cdn.example/live.m3u8",
     ["secret"]),
    ("IPv6 host", "rtsp://admin:pw1@[::1]:8554/s", "rtsp://***@[::1]:8554/s", ["pw1"]),
    ("upper-case scheme", "RTSP://admin:pw2@cam/s", "RTSP://***@cam/s", ["pw2"]),
    ("URL inside a message", "error: stream rtsp://a:pw3@h:1/s lost (end of stream)",
     "error: stream rtsp://***@h:1/s lost (end of stream)", ["pw3"]),
    ("two URLs in one line", "rtsp://a:pw4@h1/x and rtsp://b:pw5@h2/y", "rtsp://***@h1/x and rtsp://***@h2/y",
     ["pw4", "pw5"]),
    ("URL in JSON", '{"source":"rtsp://a:pw6@h/s"}', '{"source":"rtsp://***@h/s"}', ["pw6"]),
    ("percent-encoded whole URL (in a query)", "/watch?src=rtsp%3A%2F%2Fadmin%3Apw7%40cam%2Fs",
     "/watch?src=rtsp%3A%2F%2F***%40cam%2Fs", ["pw7", "admin"]),
    ("no credentials: unchanged", "rtsp://cam.local:554/s1?x=1", "rtsp://cam.local:554/s1?x=1", []),
    ("a file path: unchanged", "clips/a@b.mp4", "clips/a@b.mp4", []),
]


@pytest.mark.parametrize("case,url,expected,secrets", URLS, ids=[u[0] for u in URLS])
def test_redact_table(case, url, expected, secrets):
    got = redact(url)
    ROWS.append((f"redact: {case}", "-", got))
    assert got == expected
    assert all(s not in got for s in secrets)


def test_log_lines_are_redacted_by_the_cli_filter():
    from uar_stream.cli.main import redact_log_record

    rec = logging.LogRecord("some.library", logging.WARNING, __file__, 1, "cannot reach %s (%d)",
                            ("rtsp://admin:pw8@cam/s", 3), None)
    assert redact_log_record(rec) is True  # the line is kept, only rewritten
    assert rec.getMessage() == "cannot reach rtsp://***@cam/s (3)"


def test_errors_in_run_ended_and_summary_are_redacted(tmp_path):
    ev = EventLogSink(tmp_path / "e.jsonl")
    summ = SummarySink(json_path=tmp_path / "s.json", show_text=False, events=ev)
    info = StreamInfo("rtsp://***@cam/s", True, 640, 480, 30.0, 0, "newest_only", True, True)
    for s in (ev, summ):
        s.open(info)
    summary = RunSummary(source="rtsp://***@cam/s", error="ffmpeg: rtsp://admin:pw9@cam/s: refused")
    for s in (ev, summ):
        s.close(summary)
    end = json.loads((tmp_path / "e.jsonl").read_text().splitlines()[-1])
    assert end["error"] == "ffmpeg: rtsp://***@cam/s: refused"
    assert json.loads((tmp_path / "s.json").read_text())["error"] == end["error"]
