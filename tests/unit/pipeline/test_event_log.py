"""The event log file: every line parses (NaN as null), rotation numbers files on and keeps
only the newest `keep` of the name (earlier runs' included), a pipe is never rotated."""
import json
import os
import threading

from uar_stream.flow import Event
from uar_stream.pipeline.sinks.events import EventLog


def test_nan_and_inf_are_written_as_null(tmp_path):
    with EventLog(tmp_path / "e.jsonl") as log:
        log.write(Event("face", {"aleatoric": float("nan"), "probs": {"a": float("inf")}, "x": [1.5]}))
    rec = json.loads((tmp_path / "e.jsonl").read_text())
    assert rec["aleatoric"] is None and rec["probs"] == {"a": None} and rec["x"] == [1.5]


def test_rotation_numbers_on_and_keeps_the_newest(tmp_path):
    (tmp_path / "cam.0007.jsonl").write_text('{"event":"old"}\n')  # an earlier run's file
    (tmp_path / "other.0001.jsonl").write_text("{}\n")  # another log: not touched
    with EventLog(tmp_path / "cam.jsonl", max_bytes=300, keep=2) as log:
        for i in range(40):
            log.write(Event("face", {"i": i, "pad": "x" * 40}))
    names = sorted(p.name for p in tmp_path.iterdir())
    last = int(names[1].split(".")[1])
    kept = [f"cam.{last - 1:04d}.jsonl", f"cam.{last:04d}.jsonl"]
    assert last - 1 > 8 and names == [*kept, "cam.jsonl", "other.0001.jsonl"]  # numbered after 0007
    assert [p.name for p in log.rotated] == kept
    seen = []
    for name in (*kept, "cam.jsonl"):
        text = (tmp_path / name).read_text()
        assert len(text.encode()) <= 300 and text.endswith("\n")
        seen += [json.loads(line)["i"] for line in text.splitlines()]
    assert seen == list(range(seen[0], 40))  # in order, no line lost or split across files


def test_a_pipe_is_written_but_never_rotated(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()))
    reader.start()
    with EventLog(fifo, max_bytes=50, keep=1) as log:
        for i in range(5):
            log.write(Event("face", {"i": i}))
    reader.join(timeout=10)
    assert [json.loads(line)["i"] for line in got[0].splitlines()] == list(range(5))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo"]


def test_a_rotation_that_fails_is_one_error_and_the_log_goes_on(tmp_path, monkeypatch):
    import pytest

    from uar_stream.errors import SinkError
    from uar_stream.pipeline.sinks import events

    def no_space(path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(events, "_gzip", no_space)
    log = EventLog(tmp_path / "cam.jsonl", max_bytes=100, keep=3, compress=True)
    with pytest.raises(SinkError, match=r"cannot rotate events file .*cam\.jsonl: No space left on device"):
        for i in range(20):
            log.write(Event("face", {"i": i, "pad": "x" * 30}))
    log.write(Event("run_ended", {}))  # the sink still tries its last line
    log.close()
    lines = [json.loads(x) for x in (tmp_path / "cam.jsonl").read_text().splitlines()]
    assert lines[-1]["event"] == "run_ended"
    assert json.loads((tmp_path / "cam.0001.jsonl").read_text().splitlines()[0])["i"] == 0  # kept, whole
