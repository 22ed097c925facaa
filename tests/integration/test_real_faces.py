"""The real-face check: tests/data/real_faces.json is a valid labelled set, and
tools/check_real_faces.py reports figures that follow from its own per-face results."""
import importlib.util
import json
from collections import Counter

import cv2
import pytest

from uar_stream.labels import CLASSES

from tests.support.paths import ROOT

DATA = ROOT / "tests" / "data" / "real_faces.json"
BOXES = ROOT / "tests" / "data" / "face_boxes.json"
NEGATIVE = {"sadness", "anger", "disgust", "fear", "contempt"}
REASONS = {None, "blur", "dark", "profile", "occlusion"}
FIELDS = {"id", "media", "frame", "box", "size", "label", "ambiguous", "unreadable", "note", "box_from"}


def _tool():
    spec = importlib.util.spec_from_file_location("check_real_faces", ROOT / "tools" / "check_real_faces.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _size(path):
    """(width, height, frames or None for a photo)."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is not None:
        return img.shape[1], img.shape[0], None
    cap = cv2.VideoCapture(str(path))
    size = (cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT),
            cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    return size


@pytest.fixture(scope="module")
def faces():
    return json.loads(DATA.read_text())["faces"]


def test_every_face_has_the_fields_and_allowed_values(faces):
    assert len(faces) >= 60
    assert len({f["id"] for f in faces}) == len(faces)
    for f in faces:
        assert FIELDS <= set(f) <= FIELDS | {"second"}, f["id"]
        assert f["label"] in CLASSES, f["id"]
        assert f["unreadable"] in REASONS, f["id"]
        assert isinstance(f["ambiguous"], bool) and f["note"].strip(), f["id"]
        if "second" in f:  # the runner-up only makes sense where a person hesitates
            assert f["ambiguous"] and f["second"] in CLASSES and f["second"] != f["label"], f["id"]
        x0, y0, x1, y1 = f["box"]
        assert 0 <= x0 < x1 and 0 <= y0 < y1, f["id"]
        assert abs(f["size"] - ((x1 - x0) * (y1 - y0)) ** 0.5) <= 1, f["id"]


def test_the_set_is_not_only_smiles(faces):
    labels = Counter(f["label"] for f in faces)
    assert sum(labels[c] for c in NEGATIVE) / len(faces) >= 0.25, labels
    assert labels["neutral"] >= 10 and labels["happiness"] / len(faces) <= 0.4, labels
    groups = Counter(_tool().group_of(f) for f in faces)
    assert groups["clear"] >= 40 and all(groups[g] >= 3 for g in ("ambiguous", "blur", "dark",
                                                                   "profile", "occlusion")), groups
    clear_neg = [f for f in faces if _tool().group_of(f) == "clear" and f["label"] in NEGATIVE]
    assert len(clear_neg) >= 10


def test_boxes_lie_inside_their_images_and_agree_with_face_boxes(faces, media):
    truth = {(e["media"], e["frame"]): [f["box"] for f in e["faces"]]
             for e in json.loads(BOXES.read_text())["images"]}
    sizes = {}
    for f in faces:
        if f["media"] not in sizes:
            sizes[f["media"]] = _size(media / f["media"])
        w, h, n = sizes[f["media"]]
        x0, y0, x1, y1 = f["box"]
        assert x1 <= w and y1 <= h, (f["id"], w, h)
        assert (f["frame"] is None) == (n is None), f["id"]  # a photo has no frame index, a video one
        if f["frame"] is not None:
            assert 0 <= f["frame"] < n, f["id"]
        if f["box_from"] == "tests/data/face_boxes.json":
            assert f["box"] in truth[(f["media"], f["frame"])], f["id"]


def test_the_tool_reports_figures_that_follow_from_its_per_face_results(tmp_path, media, default_model,
                                                                        capsys):
    out = tmp_path / "check.json"
    rc = _tool().main(["--model", str(default_model), "--limit", "12", "--json", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "accuracy, clear faces" in printed and "routes c/a/ood clear" in printed
    doc = json.loads(out.read_text())
    recs, s = doc["faces"][str(default_model)], doc["summaries"][str(default_model)]
    assert [r["id"] for r in recs] == [f["id"] for f in json.loads(DATA.read_text())["faces"][:12]]
    clear = [r for r in recs if r["group"] == "clear" and r["detected"]]
    assert clear and s["clear"]["n"] == len(clear)
    assert s["clear"]["accuracy"] == round(sum(r["top"] == r["label"] for r in clear) / len(clear), 3)
    assert s["clear_rejected_ood"]["n"] == sum(r["route"] == "out_of_distribution" for r in clear)
    assert sum(v["n"] for v in s["recall_clear"].values()) == len(clear)
    for g, gs in s["groups"].items():
        in_g = [r for r in recs if r["group"] == g]
        assert gs["faces"] == len(in_g) and sum(gs["routes"].values()) == gs["detected"], g
        assert set(gs["routes"]) == {"confident", "ambiguous", "out_of_distribution"}
    assert s["detected"] + len(s["missed"]) == s["faces"] == 12
    for r in recs:
        if r["detected"]:
            assert r["iou"] >= 0.3 and abs(sum(r["probs"]) - 1) < 1e-3 and r["top"] in CLASSES


def test_a_bad_or_unfinished_model_dir_is_one_line_and_not_a_crash(tmp_path, capsys):
    (tmp_path / "run").mkdir()  # a training run without its manifest, as engines/next
    rc = _tool().main(["--model", str(tmp_path / "run"), "--model", str(tmp_path / "nowhere")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 2
    assert err[0].startswith("skipped: ") and "manifest.json" in err[0]
    assert err[1].startswith("error: ") and "nowhere" in err[1]
