"""Detection modes on real media: a 50-face grid, the negative media, the committed ground truth."""
import json
import math

import cv2
import numpy as np
import pytest

from uar_stream import load_config
from uar_stream.pipeline.faces import FaceDetector, nms, tile_grid

from tests.support.paths import ROOT

TRUTH = ROOT / "tests" / "data" / "face_boxes.json"
NEGATIVES = ("dlib_dogs.jpg", "fer_no-faces.jpg", "faceapi_white.png", "pyfeat_free-mountain-vector-01.jpg")


def _detector(mode):
    return FaceDetector.from_config(load_config(None, {"detector.mode": mode}).detector)


def _grid(media, rows=5, cols=10, cell=128):
    """A face from a shared photo, cropped with some margin, repeated rows x cols."""
    img = cv2.imread(str(media / "faceapi_happy.jpg"))
    det = _detector("fast")
    (x0, y0, x1, y1) = max(det.detect(img), key=lambda f: f.score).box
    det.close()
    cx, cy, half = (x0 + x1) // 2, (y0 + y1) // 2, int(0.8 * (x1 - x0))
    tile = cv2.resize(img[max(0, cy - half):cy + half, max(0, cx - half):cx + half], (cell, cell))
    return np.vstack([np.hstack([tile] * cols)] * rows)


@pytest.mark.parametrize("mode", ["auto", "accurate"])
def test_a_grid_of_50_faces_is_found(media, mode):
    grid = _grid(media)
    det = _detector(mode)
    found = det.detect(grid)
    det.close()
    # one face per cell, at most one detection per cell
    cells = {(int((f.box[0] + f.box[2]) / 2 // 128), int((f.box[1] + f.box[3]) / 2 // 128)) for f in found}
    assert len(found) >= 45 and len(cells) == len(found)
    assert load_config(None).detector.max_faces >= 50  # the Analyzer keeps them all


def test_fast_mode_misses_the_grid_that_tiles_find(media):
    # The cause of "50 faces give 0": the whole frame is shrunk to the model's 192 px input.
    det = _detector("fast")
    assert len(det.detect(_grid(media))) < 10
    det.close()


@pytest.mark.parametrize("mode", ["auto", "accurate"])
def test_no_faces_on_the_negative_media(media, mode):
    det = _detector(mode)
    found = {n: len(det.detect(cv2.imread(str(media / n)))) for n in NEGATIVES}
    cap = cv2.VideoCapture(str(media / "pyfeat_no_face.mp4"))
    frames = 0
    while True:
        ok, im = cap.read()
        if not ok:
            break
        found[f"pyfeat_no_face.mp4@{frames}"] = len(det.detect(im))
        frames += 1
    det.close()
    assert frames >= 90 and {k: v for k, v in found.items() if v} == {}


def test_tiles_cover_the_frame_with_overlap():
    tiles = tile_grid(1920, 1080, 480, 0.3)
    cover = np.zeros((1080, 1920), np.uint8)
    for x0, y0, x1, y1 in tiles:
        assert x1 - x0 == 480 and y1 - y0 == 480
        cover[y0:y1, x0:x1] += 1
    assert cover.min() >= 1 and max(t[2] for t in tiles) == 1920 and max(t[3] for t in tiles) == 1080
    assert tile_grid(400, 300, 480, 0.3) == [(0, 0, 400, 300)]


def test_nms_keeps_the_best_whole_detection_and_its_keypoints():
    lm = [np.full((6, 2), v, np.float32) for v in range(3)]
    face = np.array([100, 100, 200, 200], float)
    cands = [(0.7, face, lm[0], False), (0.9, face + 3, lm[1], False),
             (0.95, np.array([100, 100, 150, 200], float), lm[2], True),  # cut by a tile edge
             (0.8, face + 300, lm[0], False)]
    kept = nms(cands, 0.3)
    assert [k[0] for k in kept] == [0.9, 0.8] and kept[0][2] is lm[1]


def test_ground_truth_is_complete_and_sized():
    doc = json.loads(TRUTH.read_text())
    faces = [f for e in doc["images"] for f in e["faces"]]
    assert len(faces) == doc["faces"] >= 150
    for f in faces:
        x0, y0, x1, y1 = f["box"]
        assert x1 > x0 and y1 > y0 and f["size"] == round(math.sqrt((x1 - x0) * (y1 - y0)))
    assert {n["media"] for n in doc["negatives"]} >= {"pyfeat_no_face.mp4", *NEGATIVES}


def _frame(media, name, index):
    cap = cv2.VideoCapture(str(media / name))
    for _ in range(index + 1):
        ok, im = cap.read()
        assert ok
    cap.release()
    return im


@pytest.mark.parametrize("votes, found", [(0, False), (3, True)])
def test_tile_votes_keep_a_dark_face_below_the_score_floor(media, votes, found):
    # The dim, small face at the left of this frame scores under min_confidence in every
    # single pass; the full-range passes on mirrored and CLAHE tiles and the short-range
    # ones agree on it, and the votes keep it. (MTCNN finds it too: off here, to see the votes.)
    face = np.array([[52, 191, 81, 221]], float)
    det = FaceDetector.from_config(load_config(None, {"detector.mode": "accurate", "detector.votes": votes,
                                                      "detector.mtcnn": False}).detector)
    boxes = np.array([f.box for f in det.detect(_frame(media, "fr_short_hamilton_clip.mp4", 10))], float)
    det.close()
    from uar_stream.pipeline.tracking import iou_matrix
    hit = bool(len(boxes)) and bool((iou_matrix(face, boxes.reshape(-1, 4)) >= 0.5).any())
    assert hit is found


def test_a_mirrored_pass_maps_box_and_keypoints_back(media):
    from uar_stream.pipeline.faces import LEFT_EYE, RIGHT_EYE, _Graph, _raw

    rgb = cv2.cvtColor(cv2.imread(str(media / "faceapi_happy.jpg")), cv2.COLOR_BGR2RGB)
    g = _Graph("full", 0.5)
    (s, b, lm), (s_f, b_f, lm_f) = (max(_raw(g, rgb, flip), key=lambda c: c[0]) for flip in (False, True))
    g.close()
    width = b[2] - b[0]
    assert np.abs(b_f - b).max() < 0.1 * width and np.abs(lm_f - lm).max() < 0.1 * width
    assert lm_f[RIGHT_EYE][0] < lm_f[LEFT_EYE][0]  # the subject's right eye stays image-left
