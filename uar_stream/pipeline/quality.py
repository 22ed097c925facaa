"""Face quality gates: reject a face the model should not be asked about, with a reason.

From the 6 BlazeFace keypoints the head pose is estimated (roughly: roll from the eye line,
yaw from how far the nose tip sits off the eye midpoint, pitch from where it sits between
the eyes and the mouth), and from the aligned 48x48 crop its brightness (mean gray) and
sharpness (variance of the Laplacian). A face outside the configured limits (``quality:``)
is routed ``out_of_distribution`` with reason ``pose``, ``too_small``, ``too_dark`` or
``blurred``, distinct from the model's own ``epistemic`` (and ``density``). The first gate
that fails names the reason, in that order. The science figures (evaluate) never pass
through these gates: they measure the model's own.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from uar_stream.config import QualityConfig
from uar_stream.flow import DetectedFace, Route
from uar_stream.pipeline.faces import LEFT_EYE, MOUTH_CENTER, NOSE_TIP, RIGHT_EYE

#: Where the nose tip sits between the eye line (0) and the mouth (1) in a frontal face:
#: the canonical FER+ crop's keypoints (docs/faces.md), (28.8 - 18.65) / (36.6 - 18.65).
FRONTAL_NOSE_DROP = 0.565
#: Nose tip depth in front of the eyes, in eye distances (average adult head): turns the
#: nose's sideways offset into a yaw angle.
NOSE_DEPTH = 0.55


@dataclass(frozen=True)
class FaceQuality:
    """Measured quality of one face: angles in degrees, size in pixels (eye distance and
    box width), brightness 0-255, sharpness (Laplacian variance of the 48x48 crop)."""

    yaw: float
    pitch: float
    roll: float
    size_px: float
    brightness: float
    sharpness: float


def head_pose(landmarks: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees from the 6 keypoints; 0 is frontal and upright."""
    lm = np.asarray(landmarks, np.float64)
    eye_vec = lm[LEFT_EYE] - lm[RIGHT_EYE]
    eye_dist = max(float(np.hypot(*eye_vec)), 1e-6)
    roll = math.degrees(math.atan2(eye_vec[1], eye_vec[0]))
    across = eye_vec / eye_dist
    down = np.array([-across[1], across[0]])
    mid = (lm[LEFT_EYE] + lm[RIGHT_EYE]) / 2
    nose, mouth = lm[NOSE_TIP] - mid, lm[MOUTH_CENTER] - mid
    yaw = math.degrees(math.atan2(float(nose @ across) / eye_dist, NOSE_DEPTH))
    drop = float(nose @ down) / max(float(mouth @ down), 1e-6)
    pitch = math.degrees(math.atan2(drop - FRONTAL_NOSE_DROP, 0.5))
    return yaw, pitch, roll


def measure(face: DetectedFace, crop: np.ndarray) -> FaceQuality:
    """Pose, size, brightness and sharpness of one detected face and its aligned crop."""
    yaw, pitch, roll = head_pose(face.landmarks)
    lm = np.asarray(face.landmarks, np.float64)
    eye_dist = float(np.hypot(*(lm[LEFT_EYE] - lm[RIGHT_EYE])))
    width = float(face.box[2] - face.box[0])
    c = np.asarray(crop)
    sharp = float(cv2.Laplacian(c.astype(np.float32), cv2.CV_32F).var())
    return FaceQuality(yaw, pitch, roll, min(width, 2.5 * eye_dist), float(c.mean()), sharp)


def failed_gate(q: FaceQuality, cfg: QualityConfig) -> str | None:
    """The first gate a face fails (pose, too_small, too_dark, blurred), or None."""
    if abs(q.yaw) > cfg.max_yaw_deg or abs(q.pitch) > cfg.max_pitch_deg or abs(q.roll) > cfg.max_roll_deg:
        return "pose"
    if q.size_px < cfg.min_face_px:
        return "too_small"
    if q.brightness < cfg.min_brightness:
        return "too_dark"
    if q.sharpness < cfg.min_sharpness:
        return "blurred"
    return None


class QualityGates:
    """``gate(face, crop, route, reason) -> (route, reason)``: the route and reason after the
    quality gates (unchanged when they are off or the face passes)."""

    def __init__(self, cfg: QualityConfig):
        self.cfg = cfg

    def gate(self, face: DetectedFace, crop: np.ndarray, route: Route,
             reason: str | None) -> tuple[Route, str | None]:
        """A failed gate overrides the model's route: the face is rejected, and why."""
        if not self.cfg.enabled:
            return route, reason
        failed = failed_gate(measure(face, crop), self.cfg)
        return (Route.OUT_OF_DISTRIBUTION, failed) if failed else (route, reason)
