"""YuNet, the proposer of `auto` (pipeline/yunet.py): real faces and non-faces, the shipped weights'
hash check, the config keys, which modes run it, and what it adds to `auto`."""
import shutil

import cv2
import numpy as np
import pytest

from uar_stream import load_config
from uar_stream.errors import ConfigError, ModelError
from uar_stream.model.store import file_sha256
from uar_stream.pipeline import yunet as yn
from uar_stream.pipeline.faces import (
    LEFT_EYE,
    MOUTH_CENTER,
    NOSE_TIP,
    RIGHT_EYE,
    YUNET_RANK,
    YUNET_TO_BLAZEFACE,
    five_point_faces,
)
from uar_stream.pipeline.tracking import iou_matrix
from uar_stream.quiet import third_party_quiet

from tests.support.detection import detector as _detector
from tests.support.detection import truth_boxes as _truth


@pytest.fixture(scope="module")
def yunet():
    return yn.YuNet()


def _bgr(media, name):
    return cv2.imread(str(media / name))


def _opencv_yunet(bgr):
    """The reference decoder: OpenCV's FaceDetectorYN on the same file, best first."""
    with third_party_quiet():  # OpenCV 5 warns on creation that its graph engine ignores the target
        det = cv2.FaceDetectorYN.create(str(yn.WEIGHTS), "", (bgr.shape[1], bgr.shape[0]),
                                        yn.SCORE_THRESHOLD, yn.NMS_IOU, yn.TOP_K)
    _, found = det.detect(np.ascontiguousarray(bgr))
    return [] if found is None else sorted(found, key=lambda r: -r[14])


@pytest.mark.parametrize("name", ["pyfeat_multi_face.jpg", "dlib_2008_007676.jpg", "fr_two_people.jpg",
                                  "human_stock-emotions-a-4.jpg", "fer_no-faces.jpg", "dlib_dogs.jpg",
                                  "facenet_video.mp4"])
def test_onnxruntime_decoding_gives_opencvs_faces(media, yunet, name):
    """Our numpy decoding of the onnxruntime outputs and OpenCV's FaceDetectorYN on the same
    file: the same faces, in the same order, scores within float rounding, boxes and landmarks
    within a hundredth of a pixel (a 1080p video frame, photos with 0-7 faces, odd sizes)."""
    if name.endswith(".mp4"):
        cap = cv2.VideoCapture(str(media / name))
        for _ in range(31):
            img = cap.read()[1]
        cap.release()
    else:
        img = _bgr(media, name)
    ours, ref = yunet.detect(img), _opencv_yunet(img)
    assert len(ours) == len(ref)
    for (score, box, marks), r in zip(ours, ref, strict=True):
        assert abs(score - r[14]) < 1e-5
        np.testing.assert_allclose(box, [r[0], r[1], r[0] + r[2], r[1] + r[3]], atol=1e-2)
        np.testing.assert_allclose(marks, r[4:14].reshape(5, 2), atol=1e-2)


def test_the_five_faces_of_a_group_photo_with_their_landmarks(media, yunet):
    found = yunet.detect(_bgr(media, "pyfeat_multi_face.jpg"))
    truth = _truth("pyfeat_multi_face.jpg")
    assert len(found) == len(truth) == 5 and all(s >= 0.9 for s, _, _ in found)
    m = iou_matrix(truth, np.array([b for _, b, _ in found]))
    assert (m.max(1) >= 0.5).all() and len(set(m.argmax(1))) == 5  # one box per true face
    for _, (x0, y0, x1, y1), p in found:
        assert p.shape == (5, 2)
        assert ((p[:, 0] > x0) & (p[:, 0] < x1) & (p[:, 1] > y0) & (p[:, 1] < y1)).all()
        eyes = p[[yn.EYE_IMAGE_LEFT, yn.EYE_IMAGE_RIGHT]]
        mouth = p[[yn.MOUTH_IMAGE_LEFT, yn.MOUTH_IMAGE_RIGHT]]
        assert eyes[:, 1].max() < p[yn.NOSE, 1] < mouth[:, 1].min()  # upright faces
        assert eyes[0, 0] < eyes[1, 0] and mouth[0, 0] < mouth[1, 0]  # image-left first


@pytest.mark.parametrize("name", ["dlib_dogs.jpg", "fer_no-faces.jpg", "faceapi_white.png"])
def test_no_face_on_dogs_a_face_free_photo_or_a_blank(media, yunet, name):
    # the dogs score 0.87 and 0.81: the authors' 0.9 keeps them out
    assert yunet.detect(_bgr(media, name)) == []


def test_the_input_size_follows_each_frame(media, yunet):
    img = _bgr(media, "pyfeat_multi_face.jpg")
    big = yunet.detect(img)
    half = yunet.detect(cv2.resize(img, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA))
    again = yunet.detect(img)
    assert len(big) == len(half) == 5
    assert all(np.allclose(a[1], b[1]) for a, b in zip(big, again, strict=True))
    # the half-size frame's boxes are the big frame's halved (not anchored to the last size)
    halved = np.array([b for _, b, _ in big]) / 2
    assert iou_matrix(halved, np.array([b for _, b, _ in half])).max(1).min() > 0.8


def test_a_frame_over_the_size_cap_is_shrunk_and_mapped_back(media, yunet):
    img = _bgr(media, "pyfeat_multi_face.jpg")  # 1000x667, upscaled past MAX_SIDE_PX
    found = yunet.detect(cv2.resize(img, None, fx=4, fy=4, interpolation=cv2.INTER_LINEAR))
    assert len(found) == 5
    m = iou_matrix(_truth("pyfeat_multi_face.jpg") * 4, np.array([b for _, b, _ in found]))
    assert (m.max(1) >= 0.5).all()
    for _, (x0, y0, x1, y1), p in found:  # landmarks in the big frame's pixels too
        assert ((p[:, 0] > x0) & (p[:, 0] < x1) & (p[:, 1] > y0) & (p[:, 1] < y1)).all()


def test_candidates_follow_blazeface_layout(media, yunet):
    # the subject's right eye is image-left; the mouth centre lies between the two corners
    found = yunet.detect(_bgr(media, "pyfeat_multi_face.jpg"))
    cands = five_point_faces(found, YUNET_TO_BLAZEFACE, YUNET_RANK)
    assert len(cands) == 5
    for _, b, lm, rank in cands:
        assert rank == YUNET_RANK and lm.shape == (6, 2)
        assert lm[RIGHT_EYE, 0] < lm[LEFT_EYE, 0] and lm[LEFT_EYE, 1] < lm[NOSE_TIP, 1] < lm[MOUTH_CENTER, 1]
        assert b[0] < lm[MOUTH_CENTER, 0] < b[2]


def test_yunet_does_not_replace_blazeface_boxes(media):
    # BlazeFace finds all five faces here: with YuNet the same boxes and keypoints come out
    img = _bgr(media, "pyfeat_multi_face.jpg")
    out = {}
    for on in (False, True):
        det = _detector("auto", yunet=on)
        out[on] = det.detect(img)
        det.close()
    assert len(out[True]) == len(out[False]) == 5
    for a, b in zip(out[False], out[True], strict=True):
        assert a.box == b.box and np.allclose(a.landmarks, b.landmarks)


def test_tampered_or_missing_weights_are_refused_in_one_line(tmp_path):
    copy = tmp_path / "yunet.onnx"
    shutil.copy(yn.WEIGHTS, copy)
    yn.YuNet(path=copy)  # an exact copy loads
    data = bytearray(copy.read_bytes())
    data[-1] ^= 1
    copy.write_bytes(bytes(data))
    with pytest.raises(ModelError) as e:
        yn.YuNet(path=copy)
    assert str(copy) in str(e.value) and "sha256" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ModelError, match="YuNet weights missing"):
        yn.YuNet(path=tmp_path / "nope.onnx")


def test_the_shipped_file_matches_its_recorded_sha256_and_licence():
    sidecar = (yn.WEIGHTS.parent / "yunet_n_dynamic.onnx.sha256").read_text().split()[0]
    assert file_sha256(yn.WEIGHTS) == yn.WEIGHTS_SHA256 == sidecar
    assert "Apache License" in (yn.WEIGHTS.parent / "LICENSE.md").read_text()
    assert yn.WEIGHTS_SHA256 in (yn.WEIGHTS.parent / "NOTICE.md").read_text()


def test_the_config_keys_are_validated_by_name():
    d = load_config(None).detector
    assert d.yunet is True and d.yunet_min_confidence == 0.9
    with pytest.raises(ConfigError, match=r"detector\.yunet: 'yes' is not allowed; allowed: true, false"):
        load_config(None, {"detector.yunet": "yes"})
    for bad in (1.5, 0.0):
        with pytest.raises(ConfigError, match=r"detector\.yunet_min_confidence: .* is out of range; "
                                              r"allowed: 0\.05 to 0\.99"):
            load_config(None, {"detector.yunet_min_confidence": bad})
    with pytest.raises(ConfigError, match=r"detector\.yunet_min_confidence: 'high' is not a number"):
        load_config(None, {"detector.yunet_min_confidence": "high"})


@pytest.mark.parametrize("mode, yunet, mtcnn, runs", [
    ("fast", True, True, ()), ("auto", True, True, ("yunet",)), ("auto", False, True, ()),
    ("accurate", True, True, ("mtcnn",)), ("accurate", True, False, ())])
def test_only_auto_with_the_switch_builds_yunet(mode, yunet, mtcnn, runs):
    det = _detector(mode, yunet=yunet, mtcnn=mtcnn)
    assert det.proposers == runs
    det.close()


@pytest.mark.parametrize("on", [False, True])
def test_yunet_adds_a_face_of_a_group_photo_that_auto_misses(media, on):
    # dlib_2008_007676.jpg, face 5 of the ground truth: a 51 px face no whole-frame BlazeFace pass finds
    face = np.array([[131, 76, 182, 127]], float)
    det = _detector("auto", yunet=on)
    boxes = np.array([f.box for f in det.detect(_bgr(media, "dlib_2008_007676.jpg"))], float).reshape(-1, 4)
    det.close()
    assert bool((iou_matrix(face, boxes) >= 0.5).any()) is on


def test_auto_skips_yunet_where_blazeface_is_sure_and_not_in_groups(media):
    """A single-face clip: YuNet at most every YUNET_RECHECK_EVERY-th frame, the face found in each;
    a group photo and a frame without faces: YuNet every time."""
    from uar_stream.pipeline.faces import YUNET_RECHECK_EVERY

    det = _detector("auto", yunet=True)
    cap = cv2.VideoCapture(str(media / "pyfeat_single_face.mp4"))
    n = 0
    while n < 30:
        ok, frame = cap.read()
        if not ok:
            break
        assert len(det.detect(frame)) == 1
        n += 1
    cap.release()
    assert n == 30 and 1 <= det.yunet_runs <= -(-n // YUNET_RECHECK_EVERY) + 1
    group, empty = _bgr(media, "pyfeat_multi_face.jpg"), _bgr(media, "fer_no-faces.jpg")
    before = det.yunet_runs
    for _ in range(3):
        det.detect(group)
        det.detect(empty)
    assert det.yunet_runs - before == 6
    det.close()


def test_proposed_faces_come_after_blazefaces_so_a_face_cap_keeps_blazefaces(media):
    """dlib_2008_007676.jpg: YuNet adds a face in auto; the detector lists BlazeFace's faces first
    (as without YuNet), the added one after, whatever its score: max_faces keeps the first."""
    img = _bgr(media, "dlib_2008_007676.jpg")
    on, off = _detector("auto", yunet=True), _detector("auto", yunet=False)
    with_y, without = on.detect(img), off.detect(img)
    on.close()
    off.close()
    assert len(with_y) == len(without) + 1
    assert [f.box for f in with_y[:len(without)]] == [f.box for f in without]


def _yunet_runs_on(det, frames) -> int:
    before = det.yunet_runs
    for f in frames:
        det.detect(f)
    return det.yunet_runs - before


def test_reset_forgets_earlier_frames_and_a_stream_start_resets(media):
    """After a group photo where YuNet added a face, auto runs YuNet on the next single-face
    frames that a fresh detector skips; reset() (and Analyzer.prepare_thread, which a stream
    calls when it starts) makes the detector behave as a fresh one."""
    from uar_stream import Analyzer

    cap = cv2.VideoCapture(str(media / "pyfeat_single_face.mp4"))
    frames = [cap.read()[1] for _ in range(3)]
    cap.release()
    group = _bgr(media, "dlib_2008_007676.jpg")
    fresh = _detector("auto", yunet=True)
    expected = _yunet_runs_on(fresh, frames)
    carried = _detector("auto", yunet=True)
    carried.detect(group)
    assert _yunet_runs_on(carried, frames) > expected  # the state it carries is real
    carried.detect(group)
    carried.reset()
    assert _yunet_runs_on(carried, frames) == expected
    for d in (fresh, carried):
        d.close()
    with Analyzer.from_config(None) as an:
        an.detect(group)
        an.prepare_thread()
        assert _yunet_runs_on(an.thread_detector(), frames) == expected
