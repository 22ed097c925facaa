"""Odd images through the CLI (gray, RGBA, 16-bit, float, 1x1, 10000x10, huge) and wrong
input to the Python API (one documented exception, InputError, saying what was expected);
no input size or face count gives an empty answer without a warning that says why."""
from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest

from uar_stream import Analyzer, InputError

from tests.reliability.support import ROWS, check_answer, cli, events_valid


def _photo(media):
    return cv2.imread(str(media / "faceapi_happy.jpg"))


IMAGES = [  # (case, make(photo) -> array written as PNG/TIFF, suffix, warning expected in the log)
    ("image: gray 8-bit", lambda p: cv2.cvtColor(p, cv2.COLOR_BGR2GRAY), ".png", None),
    ("image: RGBA (alpha channel)", lambda p: cv2.cvtColor(p, cv2.COLOR_BGR2BGRA), ".png", None),
    ("image: 16-bit colour", lambda p: p.astype(np.uint16) * 257, ".png", None),
    ("image: 16-bit gray", lambda p: cv2.cvtColor(p, cv2.COLOR_BGR2GRAY).astype(np.uint16) * 257, ".png",
     None),
    ("image: 32-bit float TIFF 0..1", lambda p: p.astype(np.float32) / 255, ".tif", None),
    ("image: 1x1", lambda p: p[:1, :1], ".png", "smaller than detector.min_face_px"),
    ("image: 10000x10", lambda p: cv2.resize(p, (10000, 10)), ".png", "smaller than detector.min_face_px"),
    ("image: 10x10000", lambda p: cv2.resize(p, (10, 10000)), ".png", "smaller than detector.min_face_px"),
    ("image: huge 9000x6000", lambda p: cv2.resize(p, (9000, 6000)), ".jpg", None),
]


@pytest.mark.parametrize("case,make,suffix,warning", IMAGES, ids=[c[0] for c in IMAGES])
def test_odd_image_through_the_cli(tmp_path, media, tiny_model, caplog, case, make, suffix, warning):
    src = tmp_path / f"in{suffix}"
    assert cv2.imwrite(str(src), make(_photo(media)))
    out, ev = tmp_path / "out.jpg", tmp_path / "e.jsonl"
    with caplog.at_level(logging.WARNING, logger="uar_stream"):
        ans = cli(["run", "--model", str(tiny_model), "--source", str(src), "--output", str(out),
                   "--events", str(ev)])
    check_answer(case, ans, 0, None)
    assert cv2.imread(str(out)) is not None and events_valid(ev)[-1]["frames"] == 1
    if warning:
        assert warning in caplog.text


def test_crowd_beyond_max_faces_warns(media, tiny_model, caplog):
    face = cv2.resize(cv2.imread(str(media / "pyfeat_0-f1-su-ph.jpg")), (256, 256))
    grid = np.vstack([np.hstack([face] * 3)] * 2)  # 6 clear faces
    with Analyzer.from_config({"model": {"path": str(tiny_model)}, "detector": {"max_faces": 2}}) as an, \
            caplog.at_level(logging.WARNING, logger="uar_stream"):
        n = len(an.analyze(grid))
        an.analyze(grid)
    warned = [r.getMessage() for r in caplog.records if "max_faces reached" in r.getMessage()]
    ROWS.append(("api: 6 faces, detector.max_faces 2", "warn", warned[0] if warned else ""))
    assert n == 2 and len(warned) == 1  # says why, once, not per frame
    assert "6 faces found" in warned[0] and "the detector's first 2 are analysed" in warned[0]


BAD = [  # (case, value, message regex)
    ("None", None, r"expected an image as a numpy array .*; got NoneType"),
    ("a nested list", [[0, 1], [2, 3]], r"got list"),
    ("a string", "photo.jpg", r"got str"),
    ("empty (0, 0, 3)", np.zeros((0, 0, 3), np.uint8), r"non-empty image; got shape \(0, 0, 3\)"),
    ("empty (0, 10)", np.zeros((0, 10), np.uint8), r"non-empty image"),
    ("one dimension", np.zeros(30, np.uint8), r"got shape \(30,\)"),
    ("four dimensions", np.zeros((2, 8, 8, 3), np.uint8), r"got shape \(2, 8, 8, 3\)"),
    ("two channels", np.zeros((8, 8, 2), np.uint8), r"got shape \(8, 8, 2\)"),
    ("int32", np.zeros((8, 8, 3), np.int32), r"got dtype int32"),
    ("bool", np.zeros((8, 8), bool), r"got dtype bool"),
    ("complex", np.zeros((8, 8), np.complex64), r"got dtype complex64"),
    ("float above 1", np.full((8, 8, 3), 200.0), r"float image must hold finite values in 0\.\.1"),
    ("float with NaN", np.full((8, 8), np.nan, np.float32), r"finite values in 0\.\.1 \(got NaN or inf\)"),
]


@pytest.fixture(scope="module")
def analyzer(tiny_model):
    with Analyzer.from_config({"model": {"path": str(tiny_model)}}) as an:
        yield an


@pytest.mark.parametrize("case,value,message", BAD, ids=[c[0] for c in BAD])
@pytest.mark.parametrize("method", ["analyze", "detect"])
def test_wrong_api_input_is_one_exception_type(analyzer, case, value, message, method):
    with pytest.raises(InputError, match=message) as e:
        getattr(analyzer, method)(value)
    assert isinstance(e.value, ValueError)  # also catchable as the builtin it is
    if method == "analyze":
        ROWS.append((f"api: analyze({case})", "InputError", str(e.value)))


@pytest.mark.parametrize("case,value", [
    ("uint16", np.zeros((64, 64, 3), np.uint16)), ("float 0..1", np.zeros((64, 64), np.float32)),
    ("(H, W, 1)", np.zeros((64, 64, 1), np.uint8)), ("BGRA", np.zeros((64, 64, 4), np.uint8)),
], ids=["uint16", "float", "HxWx1", "BGRA"])
def test_accepted_api_input(analyzer, case, value):
    assert analyzer.analyze(value) == []  # blank: no face, no error
