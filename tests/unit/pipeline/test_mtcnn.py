"""MTCNN, the second proposer of `accurate` (pipeline/mtcnn.py): real faces and blanks, the
shipped weights' hash check, the config switch, and what it adds to `accurate`."""
import shutil

import cv2
import numpy as np
import pytest

from uar_stream import load_config
from uar_stream.errors import ConfigError, ModelError
from uar_stream.model.store import file_sha256
from uar_stream.pipeline import mtcnn as mt
from uar_stream.pipeline.faces import (
    LEFT_EYE,
    MOUTH_CENTER,
    MTCNN_RANK,
    MTCNN_TO_BLAZEFACE,
    NOSE_TIP,
    RIGHT_EYE,
    five_point_faces,
)
from uar_stream.pipeline.tracking import iou_matrix

from tests.support.detection import detector as _detector
from tests.support.detection import truth_boxes as _truth


@pytest.fixture(scope="module")
def mtcnn():
    return mt.MTCNN()


def _rgb(media, name):
    return cv2.cvtColor(cv2.imread(str(media / name)), cv2.COLOR_BGR2RGB)


def test_the_five_faces_of_a_group_photo_with_their_landmarks(media, mtcnn):
    found = mtcnn.detect(_rgb(media, "pyfeat_multi_face.jpg"))
    truth = _truth("pyfeat_multi_face.jpg")
    assert len(found) == len(truth) == 5 and all(s > 0.9 for s, _, _ in found)
    boxes = np.array([b for _, b, _ in found])
    m = iou_matrix(truth, boxes)
    assert (m.max(1) >= 0.5).all() and len(set(m.argmax(1))) == 5  # one box per true face
    for _, (x0, y0, x1, y1), p in found:
        assert p.shape == (5, 2)
        assert ((p[:, 0] > x0) & (p[:, 0] < x1) & (p[:, 1] > y0) & (p[:, 1] < y1)).all()
        eyes = p[[mt.EYE_IMAGE_LEFT, mt.EYE_IMAGE_RIGHT]]
        mouth = p[[mt.MOUTH_IMAGE_LEFT, mt.MOUTH_IMAGE_RIGHT]]
        assert eyes[:, 1].max() < p[mt.NOSE, 1] < mouth[:, 1].min()  # upright faces
        assert eyes[0, 0] < eyes[1, 0] and mouth[0, 0] < mouth[1, 0]


@pytest.mark.parametrize("name", ["faceapi_white.png", "dlib_dogs.jpg"])
def test_no_face_on_a_blank_image_or_dogs(media, mtcnn, name):
    assert mtcnn.detect(_rgb(media, name)) == []


def test_detector_keypoints_follow_blazeface_layout(media, mtcnn):
    # the subject's right eye is image-left; the mouth centre lies between the two corners
    found = mtcnn.detect(_rgb(media, "pyfeat_multi_face.jpg"))
    cands = five_point_faces(found, MTCNN_TO_BLAZEFACE, MTCNN_RANK)
    assert len(cands) == 5
    for _, b, lm, rank in cands:
        assert rank == MTCNN_RANK == 3 and lm.shape == (6, 2)  # NMS ranks them after BlazeFace and YuNet
        assert lm[RIGHT_EYE, 0] < lm[LEFT_EYE, 0] and lm[LEFT_EYE, 1] < lm[NOSE_TIP, 1] < lm[MOUTH_CENTER, 1]
        assert b[0] < lm[MOUTH_CENTER, 0] < b[2]


def test_tampered_or_missing_weights_are_refused_in_one_line(tmp_path):
    copy = tmp_path / "mtcnn.safetensors"
    shutil.copy(mt.WEIGHTS, copy)
    mt.load_nets(copy)  # an exact copy loads
    data = bytearray(copy.read_bytes())
    data[-1] ^= 1  # one bit of the last weight
    copy.write_bytes(bytes(data))
    with pytest.raises(ModelError) as e:
        mt.MTCNN(path=copy)
    assert str(copy) in str(e.value) and "sha256" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ModelError, match="MTCNN weights missing"):
        mt.load_nets(tmp_path / "nope.safetensors")


def test_the_shipped_file_matches_its_recorded_sha256():
    sidecar = (mt.WEIGHTS.parent / "mtcnn.safetensors.sha256").read_text().split()[0]
    assert file_sha256(mt.WEIGHTS) == mt.WEIGHTS_SHA256 == sidecar
    assert (mt.WEIGHTS.parent / "LICENSE.md").read_text().startswith("MIT License")


def test_the_config_switch_is_a_boolean_named_in_errors():
    assert load_config(None).detector.mtcnn is True
    with pytest.raises(ConfigError, match=r"detector\.mtcnn: 'yes' is not allowed; allowed: true, false"):
        load_config(None, {"detector.mtcnn": "yes"})


@pytest.mark.parametrize("mode, mtcnn, runs", [("fast", True, False), ("auto", True, False),
                                                ("accurate", False, False), ("accurate", True, True)])
def test_only_accurate_with_the_switch_builds_mtcnn(mode, mtcnn, runs):
    det = _detector(mode, mtcnn=mtcnn)
    assert ("mtcnn" in det.proposers) is runs
    det.close()


@pytest.mark.parametrize("on", [False, True])
def test_mtcnn_adds_a_small_face_of_the_crowd_that_blazeface_misses(media, on):
    # facenet_video.mp4@30, face 3: a 39 px face between two people, no BlazeFace view proposes it
    cap = cv2.VideoCapture(str(media / "facenet_video.mp4"))
    for _ in range(31):
        ok, frame = cap.read()
        assert ok
    cap.release()
    det = _detector("accurate", mtcnn=on)
    boxes = np.array([f.box for f in det.detect(frame)], float).reshape(-1, 4)
    det.close()
    face = _truth("facenet_video.mp4", 30)[3:4]
    assert bool((iou_matrix(face, boxes) >= 0.5).any()) is on
