"""YuNet face detection (Wu, Peng and Yu 2023), a proposer beside BlazeFace in the detector.

YuNet-n is a single-stage anchor-free CNN (~75k parameters) trained by its authors on WIDER
FACE; it gives a score, a box and 5 landmarks per face. ``yunet_weights/yunet_n_dynamic.onnx``
is the authors' ONNX export from libfacedetection.train (Apache-2.0, licence and origin in
``yunet_weights/``), run by OpenCV's ``cv2.FaceDetectorYN`` (OpenCV is already the project's
image library: no new dependency). The file's sha256 is checked before OpenCV reads it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from uar_stream.errors import ModelError
from uar_stream.model.store import file_sha256
from uar_stream.quiet import third_party_quiet

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


class YuNet:
    """YuNet on BGR uint8 images; ``detect`` gives (score, box xyxy, landmarks (5, 2)) per face.

    ``score_threshold``: the least score kept; ``nms_iou``: YuNet's own NMS; ``top_k``: the most
    candidates before NMS. The input size follows each frame; one with a longer side over
    ``max_side_px`` is shrunk to it first (boxes and landmarks are given in the frame's pixels).
    """

    def __init__(self, score_threshold: float = SCORE_THRESHOLD, nms_iou: float = NMS_IOU,
                 top_k: int = TOP_K, max_side_px: int = MAX_SIDE_PX, path: Path = WEIGHTS,
                 sha256: str = WEIGHTS_SHA256):
        import cv2

        self.score_threshold = float(score_threshold)
        # OpenCV 5 warns once, on creation, that its new graph engine ignores the target: noise
        with third_party_quiet():
            self._det = cv2.FaceDetectorYN.create(str(check_weights(path, sha256)), "", (320, 320),
                                                  self.score_threshold, float(nms_iou), int(top_k))
        self._size: tuple[int, int] | None = None
        self.max_side_px = int(max_side_px)

    def detect(self, bgr: np.ndarray) -> list[tuple[float, np.ndarray, np.ndarray]]:
        """Faces of a BGR uint8 image, best first: (score, box xyxy float64, landmarks (5, 2)
        float32 in :data:`EYE_IMAGE_LEFT` ... order), in the image's pixels."""
        import cv2

        k = min(1.0, self.max_side_px / max(bgr.shape[:2]))
        if k < 1.0:
            bgr = cv2.resize(bgr, None, fx=k, fy=k, interpolation=cv2.INTER_AREA)
        bgr = np.ascontiguousarray(bgr)
        size = (bgr.shape[1], bgr.shape[0])
        if size != self._size:  # the anchors are laid out for one input size
            self._det.setInputSize(size)
            self._size = size
        _, found = self._det.detect(bgr)
        if found is None:
            return []
        out = []
        for f in sorted(found, key=lambda r: -r[14]):
            x, y, w, h = (float(v) / k for v in f[:4])
            out.append((float(f[14]), np.array([x, y, x + w, y + h], np.float64),
                        (np.asarray(f[4:14], np.float32) / k).reshape(5, 2)))
        return out
