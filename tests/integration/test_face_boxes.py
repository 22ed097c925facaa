"""The face-box ground truth is consistent with itself: counts, sizes, and the re-drawn boxes."""
import importlib.util
import json

import pytest

from tests.support.paths import ROOT

BOXES = ROOT / "tests" / "data" / "face_boxes.json"


def _framing():
    spec = importlib.util.spec_from_file_location("truth_framing", ROOT / "tools" / "truth_framing.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def doc():
    return json.loads(BOXES.read_text())


def test_the_count_and_every_size_follow_from_the_boxes(doc):
    faces = [f for e in doc["images"] for f in e["faces"]]
    assert doc["faces"] == len(faces) >= 150
    for f in faces:
        x0, y0, x1, y1 = f["box"]
        assert x0 < x1 and y0 < y1, f
        assert abs(f["size"] - ((x1 - x0) * (y1 - y0)) ** 0.5) <= 1, f


def test_every_redrawn_box_follows_from_its_eye_mouth_and_cheek_lines(doc):
    rule = _framing().box_from_lines
    redrawn = [f for e in doc["images"] for f in e["faces"] if "drawn_from" in f]
    assert len(redrawn) >= 20
    for f in redrawn:
        d = f["drawn_from"]
        assert d["eye_y"] < d["mouth_y"], f
        assert rule(d["eye_y"], d["mouth_y"], tuple(d["cheeks"])) == f["box"], f
        assert f["how"].startswith("drawn by eye"), f


def test_the_rule_frames_brow_to_chin_and_refuses_swapped_lines():
    mod = _framing()
    x0, y0, x1, y1 = mod.box_from_lines(100.0, 140.0, (80.0, 160.0))
    assert y0 < 100 < 140 < y1  # eyes and mouth inside, eyes in the upper half
    assert (100 - y0) < (y1 - 100)
    assert abs((x1 - x0) - (y1 - y0)) <= 1  # square, as BlazeFace's boxes are (to rounding)
    with pytest.raises(ValueError, match="eye line"):
        mod.box_from_lines(140.0, 100.0, (80.0, 160.0))
