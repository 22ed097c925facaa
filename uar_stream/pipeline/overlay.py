"""Drawing: a box per face coloured by route, a label block (text and the A/E bars), the FPS.

Readable in groups: each face's label block (its text line, then the aleatoric and epistemic
bars under the text, never over it) is placed where it overlaps no other block and stays
inside the frame: above the box, below it, inside its top, or, failing those, at the nearest
free place with a leader line to the box (:meth:`Overlay.place`). Text is scaled to the face
and the frame. Each bar is drawn so that its routing threshold sits at the middle mark: a
rejected face's E bar visibly crosses its mark, an ambiguous face's A bar crosses its own.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from uar_stream.config import OverlayConfig, RoutingConfig
from uar_stream.flow import FaceResult, Route

_FONT = cv2.FONT_HERSHEY_SIMPLEX

#: What the overlay says for each rejection reason (FaceResult.reason).
REJECTED_TEXT = {
    "epistemic": "unfamiliar input",
    "density": "unusual features",
    "pose": "head turned",
    "too_small": "face too small",
    "too_dark": "too dark",
    "blurred": "blurred",
}


def label_text(face: FaceResult, top_k: int = 2) -> str:
    """The text shown beside a face for its route (and, when rejected, its reason)."""
    if face.route is Route.OUT_OF_DISTRIBUTION:
        return "rejected: " + REJECTED_TEXT.get(face.reason or "epistemic", face.reason or "")
    if face.route is Route.AMBIGUOUS:
        return "ambiguous: " + " | ".join(f"{c} {p:.2f}" for c, p in face.top(top_k))
    return f"{face.label} {face.confidence:.2f}"


@dataclass
class Placed:
    """Where one face's label block goes: ``rect`` (x0, y0, x1, y1) inside the frame, the
    text, its scale and thickness, and whether a leader line joins it to the box."""

    face: FaceResult
    rect: tuple[int, int, int, int]
    text: str
    scale: float
    thick: int
    leader: bool


def overlaps(a: tuple, b: tuple) -> bool:
    """True when two (x0, y0, x1, y1) rectangles share any pixel."""
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


class Overlay:
    """``annotate(frame, faces, fps)`` draws in place and returns the frame. ``routing``: the
    thresholds marked on the bars (default: the shipped model's)."""

    def __init__(self, cfg: OverlayConfig, routing: RoutingConfig | None = None):
        self.cfg = cfg
        r = routing or RoutingConfig()
        self.tau = {"A": r.tau_aleatoric, "E": r.tau_epistemic}
        self.colors = {Route.CONFIDENT: tuple(cfg.color_confident),
                       Route.AMBIGUOUS: tuple(cfg.color_ambiguous),
                       Route.OUT_OF_DISTRIBUTION: tuple(cfg.color_out_of_distribution)}

    def annotate(self, frame: np.ndarray, faces: list[FaceResult], fps: float | None = None) -> np.ndarray:
        """Draw boxes, label blocks (and the FPS when given) into ``frame``; returns it."""
        fps_rect = self._fps(frame, fps) if self.cfg.fps and fps is not None else None
        for f in faces:
            x0, y0, x1, y1 = f.box
            cv2.rectangle(frame, (x0, y0), (x1, y1), self.colors[f.route], self._thick(frame, f))
        for p in self.place(frame.shape[:2], faces, reserved=[fps_rect] if fps_rect else []):
            self._block(frame, p)
        return frame

    # -- layout ---------------------------------------------------------------------------
    def _scale(self, shape: tuple[int, int], f: FaceResult) -> float:
        """Text scale: the configured one, or with the frame height, shrunk for small faces
        (never below what is readable)."""
        base = self.cfg.font_scale or max(0.4, shape[0] / 900)  # ~0.4 at 360p, 1.2 at 1080p
        if self.cfg.font_scale:
            return base
        return float(np.clip((f.box[2] - f.box[0]) / 110, max(0.35, shape[0] / 1800), base))

    def _thick(self, frame: np.ndarray, f: FaceResult) -> int:
        return max(1, int(round(self._scale(frame.shape[:2], f) * 2)))

    def _size(self, text: str, scale: float, thick: int) -> tuple[int, int, int]:
        """(width, height, text height) of a label block."""
        (tw, th), base = cv2.getTextSize(text, _FONT, scale, thick)
        bars = 2 * (self.bar_height(scale) + 2) if self.cfg.bars else 0
        return tw + 6, th + base + 6 + bars, th

    @staticmethod
    def bar_height(scale: float) -> int:
        """Height of one A/E bar at a text scale."""
        return max(4, int(8 * scale))

    def place(self, shape: tuple[int, int], faces: list[FaceResult],
              reserved: list[tuple] = ()) -> list[Placed]:
        """Label blocks for ``faces`` in a frame of ``shape`` (h, w): none overlaps another
        or a ``reserved`` rectangle (the FPS corner), all inside the frame. Larger faces are
        placed first; a block that fits nowhere is left out (the box is still drawn)."""
        h, w = shape
        taken = [tuple(r) for r in reserved]
        out: list[Placed] = []
        for f in sorted(faces, key=lambda f: -(f.box[2] - f.box[0]) * (f.box[3] - f.box[1])):
            scale = self._scale(shape, f)
            thick = max(1, int(round(scale * 2)))
            text = (f"#{f.track_id} " if f.track_id is not None else "") + label_text(f, self.cfg.top_k)
            bw, bh, _ = self._size(text, scale, thick)
            if bw > w or bh > h:
                continue
            others = [tuple(o.box) for o in faces if o is not f]
            spot = _free_spot(f.box, bw, bh, w, h, taken, others)
            if spot is None:
                continue
            rect, leader = spot
            taken.append(rect)
            out.append(Placed(f, rect, text, scale, thick, leader))
        return out

    # -- drawing --------------------------------------------------------------------------
    def _block(self, frame: np.ndarray, p: Placed) -> None:
        color = self.colors[p.face.route]
        x0, y0, x1, y1 = p.rect
        if p.leader:
            bx0, by0, bx1, by1 = p.face.box
            anchor = (int(np.clip((x0 + x1) / 2, bx0, bx1)), by0 if y1 <= by0 else by1)
            cv2.line(frame, ((x0 + x1) // 2, y1 if y1 <= by0 else y0), anchor, color, 1, cv2.LINE_AA)
        _, _, th = self._size(p.text, p.scale, p.thick)
        (_, tth), base = cv2.getTextSize(p.text, _FONT, p.scale, p.thick)
        text_bottom = y0 + tth + base + 6
        cv2.rectangle(frame, (x0, y0), (x1 - 1, text_bottom - 1), color, -1)
        cv2.putText(frame, p.text, (x0 + 3, y0 + 3 + tth), _FONT, p.scale, (0, 0, 0), p.thick, cv2.LINE_AA)
        if self.cfg.bars:
            self._bars(frame, p.face, (x0, text_bottom, x1, y1), p.scale)

    def _bars(self, frame: np.ndarray, f: FaceResult, rect: tuple, scale: float) -> None:
        """A and E bars in ``rect`` (under the text): the threshold is the middle mark, so a
        value past its threshold fills more than half (full at twice the threshold)."""
        x0, y0, x1, _ = rect
        bh = self.bar_height(scale)
        fs = bh / 22  # letter as tall as the bar
        (lw, _), _ = cv2.getTextSize("E", _FONT, fs, 1)
        bars = (("A", f.aleatoric, self.colors[Route.AMBIGUOUS]),
                ("E", f.epistemic, self.colors[Route.OUT_OF_DISTRIBUTION]))
        for i, (name, val, col) in enumerate(bars):
            yy = y0 + 1 + i * (bh + 2)
            bx0 = x0 + lw + 3
            cv2.rectangle(frame, (x0, yy), (x1 - 1, yy + bh), (30, 30, 30), -1)
            cv2.putText(frame, name, (x0 + 1, yy + bh), _FONT, fs, (255, 255, 255), 1, cv2.LINE_AA)
            frac = float(np.clip(val / (2 * self.tau[name]), 0, 1)) if self.tau[name] > 0 else 1.0
            cv2.rectangle(frame, (bx0, yy), (bx0 + int((x1 - 1 - bx0) * frac), yy + bh), col, -1)
            mark = (bx0 + x1 - 1) // 2
            cv2.line(frame, (mark, yy - 1), (mark, yy + bh + 1), (255, 255, 255), 1)

    def _fps(self, frame: np.ndarray, fps: float) -> tuple[int, int, int, int]:
        scale = self.cfg.font_scale or max(0.4, frame.shape[0] / 900)
        thick = max(1, int(round(scale * 2)))
        txt = f"{fps:.1f} fps"
        (tw, th), base = cv2.getTextSize(txt, _FONT, scale, thick)
        cv2.rectangle(frame, (4, 4), (12 + tw, 12 + th + base), (0, 0, 0), -1)
        cv2.putText(frame, txt, (8, 8 + th), _FONT, scale, (255, 255, 255), thick, cv2.LINE_AA)
        return (4, 4, 13 + tw, 13 + th + base)


def _free_spot(box, bw: int, bh: int, w: int, h: int, taken: list,
               faces: list = ()) -> tuple[tuple, bool] | None:
    """The first free rectangle of bw x bh for a face box: above it, below it, inside its
    top (each slid left to stay in the frame), preferring spots that cover no other face;
    then the nearest free place (drawn with a leader line)."""
    x0, y0, x1, y1 = (int(v) for v in box)
    x = int(np.clip(x0, 0, w - bw))
    adjacent = [(x, y, x + bw, y + bh) for y in (y0 - bh - 2, y1 + 2, y0 + 2) if 0 <= y <= h - bh]
    for avoid in (list(taken) + list(faces), taken):
        for r in adjacent:
            if not any(overlaps(r, t) for t in avoid):
                return r, False
    ys = np.arange(0, h - bh + 1, max(2, bh // 2))
    xs = np.arange(0, w - bw + 1, max(4, bw // 4))
    gx, gy = (a.ravel() for a in np.meshgrid(xs, ys))
    free = np.ones(len(gx), bool)
    for t in taken:  # vectorised overlaps() against every candidate place
        free &= ~((gx < t[2]) & (t[0] < gx + bw) & (gy < t[3]) & (t[1] < gy + bh))
    if not free.any():
        return None
    d = (gx + bw / 2 - (x0 + x1) / 2) ** 2 + (gy + bh / 2 - (y0 + y1) / 2) ** 2
    k = int(np.argmin(np.where(free, d, np.inf)))
    return (int(gx[k]), int(gy[k]), int(gx[k]) + bw, int(gy[k]) + bh), True
