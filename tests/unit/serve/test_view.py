"""The dashboard's picture is drawn with the same routing thresholds as ``uar-stream run``'s
video: the marks on the A/E bars sit at the configured taus, not at the library defaults."""
from __future__ import annotations

import cv2
import numpy as np

from uar_stream.config import load_config
from uar_stream.flow import FaceResult, Frame, Route, StreamInfo, StreamResult
from uar_stream.labels import CLASSES
from uar_stream.pipeline.overlay import Overlay
from uar_stream.serve.view import LiveView


def _result() -> StreamResult:
    probs = np.full(8, 0.02)
    probs[1] = 0.86
    face = FaceResult(box=(120, 90, 220, 210), landmarks=np.zeros((6, 2)), detection_score=0.9,
                      probs=probs, label="happiness", confidence=0.86, aleatoric=0.5,
                      epistemic=0.04, total=0.54, route=Route.CONFIDENT, classes=CLASSES)
    img = np.full((360, 480, 3), 90, np.uint8)
    return StreamResult(Frame(0, img, 0.0, 0.0), [face])


def _dashboard_picture(config) -> np.ndarray:
    view = LiveView(config)
    view.open(StreamInfo("x", False, 480, 360, 30.0, 1, "wait", False, True))
    view.write(_result())
    _, jpeg = view.jpeg()
    return cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)


def test_the_dashboard_draws_the_configured_thresholds():
    base = load_config({})
    moved = load_config({"routing": {"tau_aleatoric": base.routing.tau_aleatoric * 3,
                                     "tau_epistemic": base.routing.tau_epistemic * 3}})
    a, b = _dashboard_picture(base), _dashboard_picture(moved)
    assert np.abs(a.astype(int) - b.astype(int)).max() > 60  # the marks moved
    # and each picture is what run's overlay draws with that config (up to JPEG loss)
    for cfg, pic in ((base, a), (moved, b)):
        direct = Overlay(cfg.overlay, cfg.routing).annotate(_result().frame.image.copy(), _result().faces)
        assert np.abs(pic.astype(int) - direct.astype(int)).mean() < 3
