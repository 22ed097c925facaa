"""Detect every k frames and re-classify every m frames: what is reused, what is redone."""
import numpy as np

from uar_stream import Analyzer, load_config
from uar_stream.flow import DetectedFace, FaceBatch, FaceResult, Route
from uar_stream.labels import CLASSES
from uar_stream.pipeline.schedule import ClassifySchedule, DetectSchedule


def _batch(*boxes):
    faces = [DetectedFace(b, 0.9, np.zeros((6, 2), np.float32)) for b in boxes]
    return FaceBatch(faces, np.zeros((len(faces), 48, 48), np.uint8), (480, 640))


class Counting:
    """A classify stage that numbers its results, so a reused one is recognisable."""

    def __init__(self):
        self.n = 0

    def __call__(self, batches):
        out = []
        for b in batches:
            res = []
            for f in b.faces:
                self.n += 1
                p = np.full(8, 1 / 8, np.float32)
                res.append(FaceResult(f.box, f.landmarks, f.score, p, CLASSES[0], 0.125, 0.1, 0.0, 0.1,
                                      Route.CONFIDENT, CLASSES, track_id=self.n))
            out.append(res)
        return out


def test_a_still_face_is_reclassified_every_m_frames_and_a_moved_one_at_once():
    fn, plan = Counting(), ClassifySchedule(3)
    still, moving = (100, 100, 200, 200), (300, 100, 400, 200)
    frames = [_batch(still, (moving[0] + 60 * i, 100, moving[2] + 60 * i, 200)) for i in range(6)]
    out = plan.classify(fn, frames[:4]) + plan.classify(fn, frames[4:])  # two engine calls
    ids_still = [r[0].track_id for r in out]
    ids_moving = [r[1].track_id for r in out]
    assert ids_still[0] == ids_still[1] == ids_still[2] != ids_still[3] == ids_still[4] == ids_still[5]
    assert len(set(ids_moving)) == 6  # moved more than the IoU allows every frame
    assert [r[0].box for r in out] == [still] * 6 and out[5][1].box == frames[5].faces[1].box


def test_detection_is_whole_frame_every_k_frames_and_after_a_lost_face():
    plan = DetectSchedule(3)
    whole = []
    for i in range(7):
        near = plan.regions()
        whole.append(near is None)
        plan.done(_batch((10, 10, 60, 60)) if i != 4 else _batch(), near is None)
    # whole at 0 and 3; 4 lost the face (searched around it only), so 5 is whole again
    assert whole == [True, False, False, True, False, True, False]


def test_a_stream_with_k_and_m_shows_every_frame_and_consistent_labels(media, default_model):
    cfg = load_config({"model": {"path": str(default_model)},
                       "tracking": {"detect_every": 3, "classify_every": 3}})
    with Analyzer(cfg) as an, an.stream(str(media / "pyfeat_single_face.mp4")) as stream:
        got = [r for r in stream]
    assert len(got) == 72 and all(len(r.faces) == 1 for r in got)
    for r in got:
        f = r.faces[0]
        assert f.label == CLASSES[int(np.argmax(f.probs))]
    plan = stream.classify_plan
    assert plan.reused > plan.classified > 0


def test_follow_every_keeps_the_last_faces_between_searches_and_whole_passes_keep_their_rhythm():
    plan = DetectSchedule(6, follow_every=2)
    kinds = []
    for _ in range(12):
        if plan.hold():
            plan.held()
            kinds.append("kept")
            continue
        near = plan.regions()
        kinds.append("whole" if near is None else "near")
        plan.done(_batch((100, 100, 200, 200)), near is None)
    assert kinds == ["whole", "kept", "near", "kept", "near", "kept"] * 2


def test_follow_every_never_keeps_an_empty_frame():
    plan = DetectSchedule(6, follow_every=3)
    plan.done(_batch(), True)  # no faces: the next frame is a whole-frame pass, not kept
    assert not plan.hold() and plan.regions() is None
