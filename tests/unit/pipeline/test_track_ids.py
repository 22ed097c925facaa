"""Track ids a person would count: no track from one frame, ids across short misses."""
import cv2
import numpy as np

from uar_stream.config import TrackingConfig
from uar_stream.flow import FaceResult, Route
from uar_stream.labels import CLASSES
from uar_stream.pipeline.routing import Router
from uar_stream.pipeline.tracking import FaceTracker

ROUTER = Router(tau_epistemic=0.05, tau_aleatoric=0.9)


def _face(box):
    p = np.full(8, 0.02, np.float32)
    p[1] = 0.86
    return FaceResult(tuple(box), np.zeros((6, 2), np.float32), 0.9, p, CLASSES[1], 0.86, 0.2, 0.01, 0.21,
                      Route.CONFIDENT, CLASSES)


def _scene(photo, box):
    """A grey frame with the photo's face pasted into ``box``."""
    img = np.full((480, 640, 3), 90, np.uint8)
    x0, y0, x1, y1 = box
    img[y0:y1, x0:x1] = cv2.resize(photo, (x1 - x0, y1 - y0))
    return img


def test_a_face_seen_once_never_becomes_a_track():
    tr = FaceTracker(TrackingConfig(), ROUTER, CLASSES)
    events = []
    for i in range(10):  # a false face flickering on every other frame
        out, ev = tr.update([_face((50, 50, 90, 90))] if i % 2 == 0 else [], i, i / 30)
        events += ev
        assert all(f.track_id is None for f in out)
    events += tr.finish()
    assert events == [] and tr.total_tracks == 0


def test_an_id_survives_a_miss_and_a_jump_when_the_face_looks_the_same(media):
    happy = cv2.imread(str(media / "faceapi_happy.jpg"))[79:231, 260:412]
    sad = cv2.imread(str(media / "faceapi_sad.jpg"))[75:202, 138:264]
    box, jumped = (200, 150, 300, 250), (270, 160, 370, 260)  # IoU 0.2 after the jump: below min_iou
    for other, same in ((happy, True), (sad, False)):
        tr = FaceTracker(TrackingConfig(min_iou=0.3), ROUTER, CLASSES)
        for i in range(5):
            out, _ = tr.update([_face(box)], i, i / 30, _scene(happy, box))
        first = out[0].track_id
        for i in range(5, 10):  # missed for 5 frames
            tr.update([], i, i / 30, _scene(happy, box))
        out, _ = tr.update([_face(jumped)], 10, 10 / 30, _scene(other, jumped))
        # the same face keeps its id; another face there starts a new (tentative, id-less) track
        assert out[0].track_id == (first if same else None)
