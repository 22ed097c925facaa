"""What the detector tests share: the face-box ground truth of one image, and a detector built
from the default config with some ``detector.*`` keys set."""
from __future__ import annotations

import json

import numpy as np

from uar_stream import load_config
from uar_stream.pipeline.faces import FaceDetector

from tests.support.paths import ROOT

FACE_BOXES = ROOT / "tests" / "data" / "face_boxes.json"


def truth_boxes(name: str, frame: int | None = None) -> np.ndarray:
    """The true boxes (xyxy) of one photo (``frame`` None) or video frame of face_boxes.json."""
    doc = json.loads(FACE_BOXES.read_text())
    (e,) = [e for e in doc["images"] if e["media"] == name and e["frame"] == frame]
    return np.array([f["box"] for f in e["faces"]], float)


def detector(mode: str, **keys) -> FaceDetector:
    """A FaceDetector in ``mode`` with ``detector.<key>`` overrides (e.g. ``yunet=False``)."""
    return FaceDetector.from_config(load_config(None, {"detector.mode": mode, **{
        f"detector.{k}": v for k, v in keys.items()}}).detector)
