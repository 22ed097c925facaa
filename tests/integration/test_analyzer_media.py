"""The analyzer on real photos: expressions, negatives, odd inputs."""
import cv2
import numpy as np
import pytest

from uar_stream import FaceResult, Route
from uar_stream.pipeline.sources import open_source

EXPRESSIONS = {"angry": "anger", "disgusted": "disgust", "fearful": "fear", "happy": "happiness",
               "neutral": "neutral", "sad": "sadness", "surprised": "surprise"}


def test_clear_expressions_mostly_right(media, analyzer):
    right, seen = 0, []
    for name, label in EXPRESSIONS.items():
        img = cv2.imread(str(media / f"faceapi_{name}.jpg"))
        res = analyzer.analyze(img)
        assert len(res) >= 1, name
        best = max(res, key=lambda r: r.detection_score)
        seen.append((name, best.label, best.route.value, round(best.confidence, 2)))
        right += best.label == label
    print(seen)
    assert right >= 5, seen


@pytest.mark.parametrize("name", ["dlib_dogs.jpg", "faceapi_white.png"])
def test_no_faces_on_negative_images(media, analyzer, name):
    img = cv2.imread(str(media / name), cv2.IMREAD_UNCHANGED)
    assert analyzer.analyze(img) == []


def test_no_faces_in_no_face_video(media, analyzer):
    with open_source(media / "pyfeat_no_face.mp4") as src:
        n = 0
        while (f := src.read()) is not None:
            assert analyzer.analyze(f.image) == [], f.index
            n += 1
    assert n >= 90


def test_alpha_gray_and_odd_sizes(media, analyzer):
    rgba = cv2.imread(str(media / "fr_32bit.png"), cv2.IMREAD_UNCHANGED)
    assert rgba.shape[2] == 4
    res = analyzer.analyze(rgba)
    assert len(res) == 1
    gray = cv2.cvtColor(rgba, cv2.COLOR_BGRA2GRAY)
    assert len(analyzer.analyze(gray)) == 1
    odd = cv2.resize(rgba[:, :, :3], (333, 641))
    assert len(analyzer.analyze(odd)) == 1
    assert analyzer.analyze(np.zeros((7, 5, 3), np.uint8)) == []
    drawn = analyzer.draw(gray, res)
    assert drawn.shape == (*gray.shape, 3)


def test_results_are_consistent(media, analyzer):
    res = analyzer.analyze(cv2.imread(str(media / "pyfeat_multi_face.jpg")))
    assert len(res) >= 4
    for r in res:
        assert isinstance(r, FaceResult)
        assert abs(r.probs.sum() - 1) < 1e-4 and r.label == r.classes[int(r.probs.argmax())]
        assert r.total == pytest.approx(r.aleatoric + r.epistemic, abs=1e-4)
        assert r.route is analyzer.router.route(r.aleatoric, r.epistemic)
        assert r.route in Route
