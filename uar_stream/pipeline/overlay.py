"""Drawing: a box per face coloured by route, a label, aleatoric/epistemic bars, FPS."""
from __future__ import annotations

import math

import cv2
import numpy as np

from uar_stream.config import OverlayConfig
from uar_stream.flow import FaceResult, Route

_FONT = cv2.FONT_HERSHEY_SIMPLEX


def label_text(face: FaceResult, top_k: int = 2) -> str:
    """The text shown beside a face for its route."""
    if face.route is Route.OUT_OF_DISTRIBUTION:
        return "rejected: unfamiliar input"
    if face.route is Route.AMBIGUOUS:
        return "ambiguous: " + " | ".join(f"{c} {p:.2f}" for c, p in face.top(top_k))
    return f"{face.label} {face.confidence:.2f}"


class Overlay:
    """``annotate(frame, faces, fps)`` draws in place and returns the frame."""

    def __init__(self, cfg: OverlayConfig):
        self.cfg = cfg
        self.colors = {Route.CONFIDENT: tuple(cfg.color_confident),
                       Route.AMBIGUOUS: tuple(cfg.color_ambiguous),
                       Route.OUT_OF_DISTRIBUTION: tuple(cfg.color_out_of_distribution)}

    def annotate(self, frame: np.ndarray, faces: list[FaceResult], fps: float | None = None) -> np.ndarray:
        """Draw boxes, labels, bars (and the FPS when given) into ``frame``; returns it."""
        h = frame.shape[0]
        scale = self.cfg.font_scale or max(0.4, h / 900)  # ~0.4 at 360p, 1.2 at 1080p
        thick = max(1, int(round(scale * 2)))
        for f in faces:
            self._face(frame, f, scale, thick)
        if self.cfg.fps and fps is not None:
            txt = f"{fps:.1f} fps"
            (tw, th), base = cv2.getTextSize(txt, _FONT, scale, thick)
            cv2.rectangle(frame, (4, 4), (12 + tw, 12 + th + base), (0, 0, 0), -1)
            cv2.putText(frame, txt, (8, 8 + th), _FONT, scale, (255, 255, 255), thick, cv2.LINE_AA)
        return frame

    def _face(self, frame: np.ndarray, f: FaceResult, scale: float, thick: int) -> None:
        color = self.colors[f.route]
        x0, y0, x1, y1 = f.box
        cv2.rectangle(frame, (x0, y0), (x1, y1), color, thick)
        txt = label_text(f, self.cfg.top_k)
        if f.track_id is not None:
            txt = f"#{f.track_id} {txt}"
        (tw, th), base = cv2.getTextSize(txt, _FONT, scale, thick)
        ty = y0 - 4 if y0 - th - base - 4 > 0 else y1 + th + 4
        cv2.rectangle(frame, (x0, ty - th - 3), (x0 + tw + 4, ty + base), color, -1)
        cv2.putText(frame, txt, (x0 + 2, ty - 1), _FONT, scale, (0, 0, 0), thick, cv2.LINE_AA)
        if self.cfg.bars:
            self._bars(frame, f, (x0, y1), max(x1 - x0, 40), scale)

    def _bars(self, frame: np.ndarray, f: FaceResult, origin, width: int, scale: float) -> None:
        """Two bars under the box: A = aleatoric, E = epistemic, 0..1 of log C."""
        x, y = origin
        bh = max(3, int(6 * scale))
        n = max(len(f.probs), 2)
        h, w = frame.shape[:2]
        # The bars take the routes' configured colours: A as ambiguous, E as rejected.
        bars = (("A", f.aleatoric, self.colors[Route.AMBIGUOUS]),
                ("E", f.epistemic, self.colors[Route.OUT_OF_DISTRIBUTION]))
        for i, (name, val, col) in enumerate(bars):
            yy = y + 3 + i * (bh + 3)
            if yy + bh >= h:
                break
            frac = float(np.clip(val / math.log(n), 0, 1))
            x_end = min(x + width, w - 1)
            cv2.rectangle(frame, (x, yy), (x_end, yy + bh), (50, 50, 50), -1)
            cv2.rectangle(frame, (x, yy), (x + int((x_end - x) * frac), yy + bh), col, -1)
            fs = bh / 22  # letter as tall as the bar
            (lw, _), _ = cv2.getTextSize(name, _FONT, fs, 1)
            if x - lw - 2 >= 0:
                cv2.putText(frame, name, (x - lw - 2, yy + bh), _FONT, fs, col, 1, cv2.LINE_AA)
