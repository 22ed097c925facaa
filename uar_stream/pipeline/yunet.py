"""YuNet face detection (Wu, Peng and Yu 2023), a proposer beside BlazeFace in the detector.

YuNet-n is a single-stage anchor-free CNN (~75k parameters) trained by its authors on WIDER
FACE; it gives a score, a box and 5 landmarks per face. ``yunet_weights/yunet_n_dynamic.onnx``
is the authors' ONNX export from libfacedetection.train (Apache-2.0, licence and origin in
``yunet_weights/``). The file's sha256 is checked before it is read.

It runs on onnxruntime (already the engine's CPU backend) with the decoding of OpenCV's
``cv2.FaceDetectorYN`` written out here in numpy: pad to a multiple of 32, per stride score
sqrt(cls * obj), box and landmarks from the grid cell, then OpenCV's NMS. The same file under
OpenCV's DNN module took 21 ms per 640x480 frame against 9.7 ms on one onnxruntime thread
(2 cores, measured side by side); ``tests/unit/pipeline/test_yunet.py`` checks that both give
the same faces.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from uar_stream.errors import ModelError
from uar_stream.model.store import file_sha256

WEIGHTS = Path(__file__).resolve().parent / "yunet_weights" / "yunet_n_dynamic.onnx"
#: sha256 of WEIGHTS (also in yunet_weights/yunet_n_dynamic.onnx.sha256 and NOTICE.md).
WEIGHTS_SHA256 = "104ee26c71d5c270ce79a6b3dced91c91013260d29a6bf18f9296c5b8c4c2b12"
#: The authors' published defaults (libfacedetection's demo and OpenCV's model zoo).
SCORE_THRESHOLD, NMS_IOU, TOP_K = 0.9, 0.3, 5000
#: Frames with a longer side above this are shrunk first: the cost grows with the pixels (a 9000x6000
#: frame took 6 s on 2 cores) and the strides (8-32 px) found none of its ~900 px faces. The benchmark's
#: largest frames (1920x1080) are not shrunk.
MAX_SIDE_PX = 1920
#: Landmark order, in image terms: OpenCV names them "right eye, left eye, nose tip, right and left
#: mouth corner" (the subject's); on the frontal faces of pyfeat_multi_face.jpg the first eye and
#: mouth corner are the image-left ones, as in MTCNN's order.
EYE_IMAGE_LEFT, EYE_IMAGE_RIGHT, NOSE, MOUTH_IMAGE_LEFT, MOUTH_IMAGE_RIGHT = range(5)


def check_weights(path: Path = WEIGHTS, sha256: str = WEIGHTS_SHA256) -> Path:
    """``path`` if it is the expected YuNet file; else ModelError in one line naming it."""
    if not Path(path).is_file():
        raise ModelError(f"{path}: YuNet weights missing (they ship in uar_stream/pipeline/yunet_weights/)")
    if file_sha256(Path(path)) != sha256:
        raise ModelError(f"{path}: sha256 differs from the expected YuNet weights (file changed or corrupt)")
    return Path(path)


#: YuNet's output strides and the multiple its input is padded to.
STRIDES, DIVISOR = (8, 16, 32), 32


class YuNet:
    """YuNet on BGR uint8 images; ``detect`` gives (score, box xyxy, landmarks (5, 2)) per face.

    ``score_threshold``: the least score kept; ``nms_iou``: YuNet's own NMS; ``top_k``: the most
    faces NMS keeps. A frame with a longer side over ``max_side_px`` is shrunk to it first (boxes
    and landmarks are given in the frame's pixels). ``threads``: onnxruntime intra-op threads,
    one by default (a stream's detector shares the cores with capture, the engine and other
    streams), without spinning.
    """

    def __init__(self, score_threshold: float = SCORE_THRESHOLD, nms_iou: float = NMS_IOU,
                 top_k: int = TOP_K, max_side_px: int = MAX_SIDE_PX, path: Path = WEIGHTS,
                 sha256: str = WEIGHTS_SHA256, threads: int = 1):
        import onnxruntime as ort

        self.score_threshold = float(score_threshold)
        self.nms_iou, self.top_k = float(nms_iou), int(top_k)
        self.max_side_px = int(max_side_px)
        so = ort.SessionOptions()
        so.intra_op_num_threads = int(threads)
        so.inter_op_num_threads = 1
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.log_severity_level = 3  # no per-session warnings on the console
        self._session = ort.InferenceSession(str(check_weights(path, sha256)), so,
                                             providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        self._outputs = [f"{k}_{s}" for k in ("cls", "obj", "bbox", "kps") for s in STRIDES]

    def detect(self, bgr: np.ndarray) -> list[tuple[float, np.ndarray, np.ndarray]]:
        """Faces of a BGR uint8 image, best first: (score, box xyxy float64, landmarks (5, 2)
        float32 in :data:`EYE_IMAGE_LEFT` ... order), in the image's pixels."""
        import cv2

        k = min(1.0, self.max_side_px / max(bgr.shape[:2]))
        if k < 1.0:
            bgr = cv2.resize(bgr, None, fx=k, fy=k, interpolation=cv2.INTER_AREA)
        h, w = bgr.shape[:2]
        ph, pw = -(-h // DIVISOR) * DIVISOR, -(-w // DIVISOR) * DIVISOR
        x = np.zeros((1, 3, ph, pw), np.float32)  # zero padding right and bottom, as OpenCV
        x[0, :, :h, :w] = bgr.transpose(2, 0, 1)
        out = dict(zip(self._outputs, self._session.run(self._outputs, {self._input: x}), strict=True))
        scores, boxes, marks = [], [], []
        for st in STRIDES:
            rows, cols = ph // st, pw // st
            cls = np.clip(out[f"cls_{st}"][0, :, 0], 0.0, 1.0)
            obj = np.clip(out[f"obj_{st}"][0, :, 0], 0.0, 1.0)
            score = np.sqrt(cls * obj)
            if rows * cols != len(score):
                raise ModelError(f"{WEIGHTS.name}: {len(score)} stride-{st} cells for a {ph}x{pw} input, "
                                 f"expected {rows * cols} (not the YuNet export this decoder reads)")
            keep = np.flatnonzero(score >= self.score_threshold)
            if not len(keep):
                continue
            r, c = (keep // cols).astype(np.float32), (keep % cols).astype(np.float32)
            bb, kp = out[f"bbox_{st}"][0, keep], out[f"kps_{st}"][0, keep].reshape(-1, 5, 2)
            cx, cy = (c + bb[:, 0]) * st, (r + bb[:, 1]) * st
            bw, bh = np.exp(bb[:, 2]) * st, np.exp(bb[:, 3]) * st
            scores.append(score[keep])
            boxes.append(np.stack([cx - bw / 2, cy - bh / 2, bw, bh], 1))
            marks.append((kp + np.stack([c, r], 1)[:, None, :]) * st)
        if not scores:
            return []
        score, box, mark = np.concatenate(scores), np.concatenate(boxes), np.concatenate(marks)
        if len(score) > 1:  # OpenCV's NMS on integer boxes, as FaceDetectorYN runs it
            ints = [[int(v) for v in b] for b in box]
            order = np.asarray(cv2.dnn.NMSBoxes(ints, score.tolist(), self.score_threshold, self.nms_iou,
                                                1.0, self.top_k), np.int64).reshape(-1)
        else:
            order = np.zeros(1, np.int64)
        faces = []
        for i in sorted(order, key=lambda j: -score[j]):
            bx, by, bw, bh = (float(v) / k for v in box[i])
            faces.append((float(score[i]), np.array([bx, by, bx + bw, by + bh], np.float64),
                          (mark[i] / k).astype(np.float32)))
        return faces
