"""Overlay layout in groups: label blocks never overlap each other or leave the frame; the
thresholds are the bars' middle marks; a rejected face says why."""
import cv2
import numpy as np

from uar_stream import load_config
from uar_stream.config import OverlayConfig, RoutingConfig
from uar_stream.flow import FaceBatch, FaceResult, Route
from uar_stream.labels import CLASSES
from uar_stream.pipeline.faces import FaceDetector, align_face
from uar_stream.pipeline.overlay import Overlay, label_text, overlaps


def _frame(media, name, index):
    cap = cv2.VideoCapture(str(media / name))
    cap.set(cv2.CAP_PROP_POS_FRAMES, index)
    ok, img = cap.read()
    assert ok
    return img


def _check(placed, shape):
    h, w = shape
    for i, p in enumerate(placed):
        x0, y0, x1, y1 = p.rect
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h, p.rect
        assert not any(overlaps(p.rect, q.rect) for q in placed[i + 1:]), p.rect


def test_labels_do_not_collide_on_a_crowded_shared_frame(media, analyzer):
    img = _frame(media, "facenet_video.mp4", 60)
    det = FaceDetector.from_config(load_config(None, {"detector.mode": "accurate"}).detector)
    faces = det.detect(img)
    det.close()
    gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    batch = FaceBatch(faces, np.stack([align_face(gray, f.landmarks) for f in faces]), img.shape[:2])
    results = analyzer.classify([batch])[0]
    assert len(results) >= 5
    ov = Overlay(OverlayConfig())
    placed = ov.place(img.shape[:2], results, reserved=[(4, 4, 120, 40)])
    assert len(placed) == len(results)
    _check(placed, img.shape[:2])
    assert not any(overlaps(p.rect, (4, 4, 120, 40)) for p in placed)


def test_fifty_long_labels_on_a_small_frame_still_never_overlap():
    rng = np.random.default_rng(0)
    faces = []
    for i in range(50):
        x, y = int(rng.integers(0, 600)), int(rng.integers(0, 320))
        p = rng.dirichlet(np.ones(8)).astype(np.float32)
        faces.append(FaceResult((x, y, x + 40, y + 40), np.zeros((6, 2)), 0.9, p, CLASSES[int(p.argmax())],
                                float(p.max()), 1.2, 0.01, 1.21, Route.AMBIGUOUS, CLASSES, track_id=i))
    placed = Overlay(OverlayConfig()).place((360, 640), faces)
    _check(placed, (360, 640))
    assert len(placed) >= 10  # those that fit; the boxes of the rest are still drawn


def test_a_rejected_face_crosses_its_mark_and_says_why():
    routing = RoutingConfig()
    p = np.full(8, 1 / 8, np.float32)
    f = FaceResult((200, 150, 320, 270), np.zeros((6, 2)), 0.9, p, CLASSES[0], 0.125, 0.3,
                   3 * routing.tau_epistemic, 0.5, Route.OUT_OF_DISTRIBUTION, CLASSES, reason="pose")
    assert label_text(f) == "rejected: head turned"
    ov = Overlay(OverlayConfig(), routing)
    frame = ov.annotate(np.zeros((480, 640, 3), np.uint8), [f])
    (placed,) = ov.place((480, 640), [f])
    x0, _, x1, y1 = placed.rect
    e_row = frame[y1 - ov.bar_height(placed.scale) // 2 - 2, x0:x1]  # the E bar, the lower one
    red = np.all(e_row == OverlayConfig().color_out_of_distribution, axis=1)
    assert red.sum() > 0.55 * (x1 - x0)  # past the middle mark (E = 3 x its threshold)
