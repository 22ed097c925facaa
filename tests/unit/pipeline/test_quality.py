"""Quality gates on real photos: pose from keypoints, size, brightness, sharpness -> reasons."""
import cv2
import numpy as np
import pytest

from uar_stream import load_config
from uar_stream.config import QualityConfig
from uar_stream.flow import DetectedFace, Route
from uar_stream.model.preprocess import canonical_landmarks
from uar_stream.pipeline.faces import FaceDetector, align_face
from uar_stream.pipeline.quality import failed_gate, head_pose, measure

CFG = QualityConfig()


def _one_face(media, name, transform=None):
    img = cv2.imread(str(media / name))
    if transform is not None:
        img = transform(img)
    det = FaceDetector.from_config(load_config(None).detector)  # as the pipeline detects
    faces = det.detect(img)
    det.close()
    assert faces, name
    f = max(faces, key=lambda f: f.score)
    return f, align_face(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), f.landmarks)


def test_a_canonical_face_is_frontal_and_upright():
    lm = np.zeros((6, 2), np.float32)
    lm[:4] = canonical_landmarks(48)
    yaw, pitch, roll = head_pose(lm)
    assert abs(yaw) < 2 and abs(pitch) < 3 and abs(roll) < 2


@pytest.mark.parametrize("name", ["faceapi_neutral.jpg", "pyfeat_multi_face.jpg", "faceapi_happy.jpg"])
def test_clear_frontal_photos_pass_every_gate(media, name):
    assert failed_gate(measure(*_one_face(media, name)), CFG) is None


@pytest.mark.parametrize("name", ["insp_pose_left_face.jpeg", "insp_rotate_rot_90.jpg"])
def test_a_profile_and_a_rotated_face_fail_the_pose_gate(media, name):
    assert failed_gate(measure(*_one_face(media, name)), CFG) == "pose"


def test_darkened_and_blurred_photos_fail_their_gates(media):
    dark = _one_face(media, "faceapi_neutral.jpg", lambda im: (im * 0.12).astype(np.uint8))
    assert failed_gate(measure(*dark), CFG) == "too_dark"
    face, crop = _one_face(media, "faceapi_neutral.jpg")
    blurred = cv2.GaussianBlur(crop, (0, 0), 3)
    assert failed_gate(measure(face, blurred), CFG) == "blurred"
    small = DetectedFace((0, 0, 18, 18), face.score, face.landmarks * (18 / (face.box[2] - face.box[0])))
    assert failed_gate(measure(small, crop), CFG) == "too_small"


def test_the_analyzer_routes_a_gated_face_out_with_its_reason(media, analyzer):
    img = (cv2.imread(str(media / "faceapi_neutral.jpg")) * 0.12).astype(np.uint8)
    (f,) = analyzer.analyze(img)
    assert f.route is Route.OUT_OF_DISTRIBUTION and f.reason == "too_dark"
    assert f.to_dict()["reason"] == "too_dark"
