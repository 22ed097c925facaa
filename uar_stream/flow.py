"""The core result type: one analysed face."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from uar_stream.pipeline.routing import Route


@dataclass
class FaceResult:
    """One face in one frame.

    box: (x0, y0, x1, y1) pixels; landmarks (6, 2) pixels; probs (C,) ensemble mean;
    aleatoric / epistemic / total in nats; route decides what the app shows.
    """

    box: tuple[int, int, int, int]
    landmarks: np.ndarray
    detection_score: float
    probs: np.ndarray
    label: str
    confidence: float
    aleatoric: float
    epistemic: float
    total: float
    route: Route
    classes: tuple[str, ...] = field(repr=False, default=())
    track_id: int | None = None

    def top(self, k: int = 2) -> list[tuple[str, float]]:
        order = np.argsort(-self.probs)[:k]
        return [(self.classes[i], float(self.probs[i])) for i in order]

    def to_dict(self, probs: bool = True) -> dict:
        d = {
            "box": [int(v) for v in self.box],
            "label": self.label,
            "confidence": round(self.confidence, 4),
            "route": self.route.value,
            "aleatoric": round(self.aleatoric, 4),
            "epistemic": round(self.epistemic, 4),
            "total": round(self.total, 4),
            "detection_score": round(self.detection_score, 3),
        }
        if self.track_id is not None:
            d["track_id"] = self.track_id
        if probs:
            d["probs"] = {c: round(float(p), 4) for c, p in zip(self.classes, self.probs)}
        return d
