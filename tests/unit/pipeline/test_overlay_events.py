import json

import numpy as np
import pytest

from uar_stream.config import OverlayConfig
from uar_stream.errors import SinkError
from uar_stream.flow import Event, FaceResult, Route
from uar_stream.labels import CLASSES
from uar_stream.pipeline.overlay import Overlay, label_text
from uar_stream.pipeline.sinks.events import EventLog


def face(route, probs=None, box=(100, 100, 200, 220)):
    p = np.array(probs if probs is not None else [0.05, 0.91, 0.01, 0.01, 0.01, 0.005, 0.005, 0.01])
    k = int(p.argmax())
    return FaceResult(box=box, landmarks=np.zeros((6, 2)), detection_score=0.9, probs=p,
                      label=CLASSES[k], confidence=float(p[k]), aleatoric=0.4, epistemic=0.02,
                      total=0.42, route=route, classes=CLASSES)


def test_label_text_per_route():
    assert label_text(face(Route.CONFIDENT)) == "happiness 0.91"
    amb = face(Route.AMBIGUOUS, [0.35, 0.05, 0.02, 0.41, 0.1, 0.03, 0.02, 0.02])
    assert label_text(amb) == "ambiguous: sadness 0.41 | neutral 0.35"
    assert label_text(face(Route.OUT_OF_DISTRIBUTION)) == "rejected: unfamiliar input"


@pytest.mark.parametrize("h, w", [(360, 640), (1080, 1920)])
def test_box_colour_follows_route(h, w):
    cfg = OverlayConfig()
    ov = Overlay(cfg)
    for route, color in [(Route.CONFIDENT, cfg.color_confident), (Route.AMBIGUOUS, cfg.color_ambiguous),
                         (Route.OUT_OF_DISTRIBUTION, cfg.color_out_of_distribution)]:
        frame = np.zeros((h, w, 3), np.uint8)
        ov.annotate(frame, [face(route, box=(300, 200, 340 + h // 4, 260 + h // 4))], fps=29.97)
        assert tuple(frame[230, 300]) == tuple(color)  # left edge of the box
        assert frame[:40, :200].any()  # the FPS corner


def test_events_are_flushed_jsonl_lines(tmp_path):
    p = tmp_path / "sub" / "ev.jsonl"
    log = EventLog(p)
    log.write(Event("run_started", {"source": "x"}))
    log.write(Event("face", {"frame": 0, **face(Route.AMBIGUOUS).to_dict()}))
    # readable before close: a crash after this point loses nothing
    lines = [json.loads(line) for line in p.read_text().splitlines()]
    assert [e["event"] for e in lines] == ["run_started", "face"]
    assert lines[1]["route"] == "ambiguous" and set(lines[1]["probs"]) == set(CLASSES)
    log.close()


def test_unwritable_events_path_is_a_sink_error(tmp_path):
    with pytest.raises(SinkError, match="cannot write events file"):
        EventLog("/etc/hostname/ev.jsonl")
