import cv2
import numpy as np
import pytest

from uar_stream.model.preprocess import CANONICAL_LANDMARKS_48, INPUT_SIZE, canonical_landmarks
from uar_stream.pipeline.faces import ALIGN_POINTS, align_face, similarity_transform, to_bgr


def _apply(m, pts):
    return pts @ m[:, :2].T + m[:, 2]


def test_similarity_recovers_a_known_transform():
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 100, (4, 2))
    ang, s, t = 0.3, 2.5, np.array([10.0, -4.0])
    r = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    dst = s * src @ r.T + t
    m = similarity_transform(src, dst)
    np.testing.assert_allclose(_apply(m, src), dst, atol=1e-3)


def test_known_landmarks_map_to_canonical_positions():
    # A face 4x bigger than the crop, rotated 20 degrees, somewhere in a 640x480 frame.
    ang = np.deg2rad(20)
    r = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    face_pts = CANONICAL_LANDMARKS_48 @ (4 * r).T + np.array([300.0, 150.0])
    lm = np.zeros((6, 2), np.float32)
    lm[list(ALIGN_POINTS)] = face_pts
    m = similarity_transform(lm[list(ALIGN_POINTS)], canonical_landmarks())
    np.testing.assert_allclose(_apply(m, face_pts), CANONICAL_LANDMARKS_48, atol=1e-3)
    # and the warp puts a dot drawn at each landmark on the canonical pixel
    frame = np.zeros((480, 640), np.uint8)
    for x, y in face_pts:
        cv2.circle(frame, (int(round(x)), int(round(y))), 6, 255, -1)
    crop = align_face(frame, lm)
    assert crop.shape == (INPUT_SIZE, INPUT_SIZE) and crop.dtype == np.uint8
    for x, y in CANONICAL_LANDMARKS_48:
        assert crop[int(round(y)), int(round(x))] > 100


def test_canonical_landmarks_are_symmetric_and_ordered():
    c = CANONICAL_LANDMARKS_48
    assert c[0, 0] < 24 < c[1, 0] and c[0, 1] == c[1, 1]
    assert c[0, 1] < c[2, 1] < c[3, 1]  # eyes above nose above mouth
    np.testing.assert_allclose(canonical_landmarks(96), c * 2)


@pytest.mark.parametrize("shape", [(50, 70), (50, 70, 1), (50, 70, 3), (50, 70, 4)])
def test_to_bgr_handles_gray_and_alpha(shape):
    out = to_bgr(np.full(shape, 128, np.uint8))
    assert out.shape == (50, 70, 3) and out.dtype == np.uint8


def test_to_bgr_rejects_nonsense():
    with pytest.raises(ValueError):
        to_bgr(np.zeros((4, 4, 2), np.uint8))
