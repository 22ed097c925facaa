"""Face detection (MediaPipe, model bundled in the wheel) and alignment to the canonical crop.

The detector is MediaPipe's BlazeFace from ``mediapipe==0.10.14``, the newest release whose
wheel still ships the .tflite models (later releases download them; see README). It returns
a box and 6 keypoints per face. Alignment maps the eyes, nose tip and mouth centre onto
:data:`uar_stream.model.preprocess.CANONICAL_LANDMARKS_48` with a least-squares similarity
transform, so a live face is framed like a FER2013 training face.
"""
from __future__ import annotations

import cv2
import numpy as np

from uar_stream.flow import DetectedFace
from uar_stream.model.preprocess import INPUT_SIZE, canonical_landmarks
from uar_stream.quiet import third_party_quiet

# Keypoint order of MediaPipe face detection. "right" is the subject's right (image left).
RIGHT_EYE, LEFT_EYE, NOSE_TIP, MOUTH_CENTER, RIGHT_EAR, LEFT_EAR = range(6)
#: The keypoints used for alignment, in the order of CANONICAL_LANDMARKS_48.
ALIGN_POINTS = (RIGHT_EYE, LEFT_EYE, NOSE_TIP, MOUTH_CENTER)


def to_bgr(frame: np.ndarray) -> np.ndarray:
    """Any uint8 image (gray, BGR, BGRA) -> contiguous 3-channel BGR."""
    frame = np.asarray(frame)
    if frame.dtype != np.uint8:
        if np.issubdtype(frame.dtype, np.floating) and frame.size and frame.max() <= 1.0:
            frame = frame * 255.0
        frame = np.clip(frame, 0, 255).astype(np.uint8)
    if frame.ndim == 2:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    if frame.ndim == 3 and frame.shape[2] == 1:
        return cv2.cvtColor(frame[:, :, 0], cv2.COLOR_GRAY2BGR)
    if frame.ndim == 3 and frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    if frame.ndim == 3 and frame.shape[2] == 3:
        return np.ascontiguousarray(frame)
    raise ValueError(f"unsupported image shape {frame.shape}: expected HxW, HxWx1, HxWx3 or HxWx4")


class FaceDetector:
    """MediaPipe face detection. ``model``: 'full' (faces up to ~5 m, crowds) or 'short'
    (faces within ~2 m, webcams; faster). Not thread-safe: one per thread."""

    def __init__(self, model: str = "full", min_confidence: float = 0.5, min_face_px: int = 16):
        with third_party_quiet():
            import mediapipe as mp  # imported here: heavy, and only the detector needs it

            self._det = mp.solutions.face_detection.FaceDetection(
                model_selection=1 if model == "full" else 0, min_detection_confidence=min_confidence)
            # The graph opens its calculators (and logs) on its own threads; one frame waits
            # for them, so that their start-up lines fall inside the quiet block.
            self._det.process(np.zeros((64, 64, 3), np.uint8))
        self.min_face_px = min_face_px
        # The full-range graph of mediapipe 0.10.14 does not apply min_detection_confidence
        # (measured: 0.60 detections pass a 0.8 setting), so the score is also checked here.
        self.min_confidence = min_confidence

    def detect(self, frame_bgr: np.ndarray) -> list[DetectedFace]:
        """Every face in a BGR frame above the configured confidence and size."""
        h, w = frame_bgr.shape[:2]
        res = self._det.process(cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB))
        faces: list[DetectedFace] = []
        for d in res.detections or []:
            if d.score[0] < self.min_confidence:
                continue
            loc = d.location_data
            bb = loc.relative_bounding_box
            x0, y0 = bb.xmin * w, bb.ymin * h
            x1, y1 = x0 + bb.width * w, y0 + bb.height * h
            lm = np.array([[k.x * w, k.y * h] for k in loc.relative_keypoints], np.float32)
            if lm.shape != (6, 2) or min(x1 - x0, y1 - y0) < self.min_face_px:
                continue
            if not _plausible(lm, x1 - x0):
                continue
            box = (int(max(0, x0)), int(max(0, y0)), int(min(w, x1)), int(min(h, y1)))
            if box[2] <= box[0] or box[3] <= box[1]:
                continue
            faces.append(DetectedFace(box, float(d.score[0]), lm))
        return faces

    def close(self) -> None:
        """Release the MediaPipe graph."""
        self._det.close()


def _plausible(lm: np.ndarray, box_w: float) -> bool:
    """Reject degenerate keypoint sets (eyes on top of each other, mouth above the eyes)."""
    eye_vec = lm[LEFT_EYE] - lm[RIGHT_EYE]
    eye_dist = float(np.hypot(*eye_vec))
    if eye_dist < 0.12 * box_w:
        return False
    eye_mid = (lm[LEFT_EYE] + lm[RIGHT_EYE]) / 2
    down = np.array([-eye_vec[1], eye_vec[0]]) / eye_dist  # face "down" direction
    return float((lm[MOUTH_CENTER] - eye_mid) @ down) > 0.3 * eye_dist


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping src -> dst
    (Umeyama 1991, no reflection). src, dst: (N, 2). Returns a 2x3 matrix."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    e = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        e[1, 1] = -1
    r = u @ e @ vt
    var_s = (s ** 2).sum() / len(src)
    scale = (sig * np.diag(e)).sum() / var_s
    t = mu_d - scale * r @ mu_s
    return np.hstack([scale * r, t[:, None]]).astype(np.float32)


def align_face(gray: np.ndarray, landmarks: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """Warp a face in a grayscale frame to the canonical ``size`` x ``size`` crop.

    To avoid aliasing when a large face is shrunk to 48 px, warp to an intermediate size
    (up to 4x) and reduce with area averaging, roughly how FER2013 faces were downsampled.
    """
    src = np.asarray(landmarks, np.float32)[list(ALIGN_POINTS)]
    m = similarity_transform(src, canonical_landmarks(size))
    scale = float(np.hypot(m[0, 0], m[1, 0]))
    k = int(np.clip(np.floor(1.0 / max(scale, 1e-6)), 1, 4))
    if k > 1:
        m = m * k
        big = cv2.warpAffine(gray, m, (size * k, size * k), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REPLICATE)
        return cv2.resize(big, (size, size), interpolation=cv2.INTER_AREA)
    return cv2.warpAffine(gray, m, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
