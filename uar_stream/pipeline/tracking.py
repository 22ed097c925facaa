"""Tracking: stable face ids across frames, per-track smoothing, hysteresis on the route.

Association is IoU + Hungarian (``scipy.optimize.linear_sum_assignment``) against each
track's box predicted with a constant-velocity model, so walking faces keep their ids.
(Why not a packaged tracker: supervision removed ByteTrack in 0.31, roboflow's ``trackers``
requires opencv-python, a second ``cv2`` beside our opencv-contrib-python, and norfair 2.3
pins numpy<2. Faces are few per frame; this is ~100 lines we can test.)

Per track, the probabilities (C,) and both uncertainties are smoothed (EMA or a window
mean); the route and the label shown change only after ``hysteresis_frames`` consecutive
frames agree on the new value, so a face near a threshold does not flicker.
"""
from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from uar_stream.config import TrackingConfig
from uar_stream.flow import Event, FaceResult, Route
from uar_stream.pipeline.routing import Router


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes a (N, 4) against b (K, 4), xyxy pixels -> (N, K)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    ix = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = ix * iy
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


class _Smoother:
    """EMA or window mean of a vector: probs (C,) + [aleatoric, epistemic, total]."""

    def __init__(self, mode: str, alpha: float, window: int):
        self.mode, self.alpha = mode, alpha
        self._ema: np.ndarray | None = None
        self._win: deque = deque(maxlen=window)

    def update(self, x: np.ndarray) -> np.ndarray:
        if self.mode == "off":
            return x
        if self.mode == "window":
            self._win.append(x)
            return np.mean(self._win, axis=0)
        self._ema = x.copy() if self._ema is None else self.alpha * x + (1 - self.alpha) * self._ema
        return self._ema


class _Hysteresis:
    """A value that changes only after ``k`` consecutive frames propose the same new value."""

    def __init__(self, k: int):
        self.k = k
        self.value = None
        self._cand, self._count = None, 0

    def update(self, proposed):
        if self.value is None or proposed == self.value:
            self.value, self._cand, self._count = proposed, None, 0
            return self.value
        if proposed == self._cand:
            self._count += 1
        else:
            self._cand, self._count = proposed, 1
        if self._count >= self.k:
            self.value, self._cand, self._count = proposed, None, 0
        return self.value


@dataclass
class Track:
    """One followed face: its id, last box, smoothing and hysteresis state, and counters."""

    track_id: int
    box: np.ndarray  # (4,) last seen, xyxy
    started_frame: int
    started_t: float
    smoother: _Smoother
    route_h: _Hysteresis  # value: the Route shown
    label_h: _Hysteresis  # value: the class index shown
    last_frame: int = 0
    last_t: float = 0.0
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))  # box centre, px/frame
    missed: int = 0
    frames: int = 0
    route_seconds: dict = field(default_factory=lambda: {r.value: 0.0 for r in Route})

    def predicted(self) -> np.ndarray:
        """The box expected this frame (constant velocity over the missed frames)."""
        shift = self.velocity * (self.missed + 1)
        return self.box + np.array([shift[0], shift[1], shift[0], shift[1]])


class SceneCutDetector:
    """A hard cut between frames: mean absolute difference of contrast-normalised 64x36
    grayscale thumbnails above ``threshold``. Measured on the test clips: cuts 0.81-0.90,
    walking crowds, head motion, crying/occlusion at most 0.35."""

    def __init__(self, threshold: float):
        self.threshold = threshold
        self._prev: np.ndarray | None = None

    def is_cut(self, image: np.ndarray) -> bool:
        """True when ``image`` starts a new shot (compared with the previous call's image)."""
        import cv2

        gray = image if image.ndim == 2 else cv2.cvtColor(image[:, :, :3], cv2.COLOR_BGR2GRAY)
        g = cv2.resize(gray, (64, 36), interpolation=cv2.INTER_AREA).astype(np.float32)
        g = (g - g.mean()) / (g.std() + 1e-3)
        prev, self._prev = self._prev, g
        return prev is not None and float(np.mean(np.abs(g - prev))) > self.threshold


class FaceTracker:
    """``update(faces, frame, t_s) -> (faces with track_id and smoothed values, events)``.

    One tracker per stream (it holds state). Events: track_started, route_changed,
    track_ended (:class:`~uar_stream.flow.Event`).
    """

    def __init__(self, cfg: TrackingConfig, router: Router, classes: tuple[str, ...]):
        self.cfg, self.router, self.classes = cfg, router, tuple(classes)
        self.tracks: list[Track] = []
        self._next_id = 1
        self.total_tracks = 0
        self._cuts = SceneCutDetector(cfg.scene_cut) if cfg.scene_cut > 0 else None

    def _new_track(self, box: np.ndarray, frame: int, t_s: float) -> Track:
        c = self.cfg
        tr = Track(self._next_id, box, frame, t_s, _Smoother(c.smoothing, c.alpha, c.window),
                   _Hysteresis(c.hysteresis_frames), _Hysteresis(c.hysteresis_frames),
                   last_frame=frame, last_t=t_s)
        self._next_id += 1
        self.total_tracks += 1
        self.tracks.append(tr)
        return tr

    def _match(self, boxes: np.ndarray) -> dict[int, Track]:
        """Detection index -> live track, by Hungarian assignment on 1 - IoU."""
        if not self.tracks or not len(boxes):
            return {}
        pred = np.stack([t.predicted() for t in self.tracks])
        last = np.stack([t.box for t in self.tracks])
        # The better of the predicted and the last box: detector jitter makes a face's
        # velocity noisy, and a bad prediction must not split a face that barely moved.
        iou = np.maximum(iou_matrix(pred, boxes), iou_matrix(last, boxes))
        rows, cols = linear_sum_assignment(1.0 - iou)
        return {int(c): self.tracks[r] for r, c in zip(rows, cols, strict=True)
                if iou[r, c] >= max(self.cfg.min_iou, 1e-6)}

    def update(self, faces: list[FaceResult], frame: int, t_s: float,
               image: np.ndarray | None = None) -> tuple[list[FaceResult], list[Event]]:
        """faces: one frame's results; image (optional): the frame, for scene-cut checks."""
        events: list[Event] = []
        if image is not None and self._cuts is not None and self._cuts.is_cut(image):
            events.extend(self.finish("scene_cut"))
        boxes = np.array([f.box for f in faces], np.float64).reshape(-1, 4)
        matched = self._match(boxes)
        out: list[FaceResult] = []
        seen: set[int] = set()
        for i, f in enumerate(faces):
            tr = matched.get(i)
            is_new = tr is None
            if is_new:
                tr = self._new_track(boxes[i], frame, t_s)
            else:
                # Time since the last sighting counts for the route shown until now.
                tr.route_seconds[tr.route_h.value.value] += max(0.0, t_s - tr.last_t)
                gap = tr.missed + 1
                step = (_centre(boxes[i]) - _centre(tr.box)) / gap
                tr.velocity = 0.5 * tr.velocity + 0.5 * step
                tr.box = boxes[i]
            tr.missed, tr.last_frame, tr.last_t = 0, frame, t_s
            tr.frames += 1
            seen.add(tr.track_id)
            r, ev = self._smooth(tr, f, frame, t_s, is_new)
            out.append(r)
            events.extend(ev)
        keep = []
        for tr in self.tracks:
            if tr.track_id not in seen:
                tr.missed += 1
                if tr.missed > self.cfg.max_age:
                    events.append(self._ended(tr, "lost"))
                    continue
            keep.append(tr)
        self.tracks = keep
        return out, events

    def _smooth(self, tr: Track, f: FaceResult, frame: int, t_s: float, is_new: bool):
        x = np.concatenate([f.probs, [f.aleatoric, f.epistemic, f.total]]).astype(np.float64)
        s = tr.smoother.update(x)
        probs = s[:-3].astype(np.float32)
        aleatoric, epistemic, total = (float(v) for v in s[-3:])
        old_route = tr.route_h.value
        route = tr.route_h.update(self.router.route(aleatoric, epistemic))
        k = tr.label_h.update(int(np.argmax(probs)))
        reason = (f.reason or "epistemic") if route is Route.OUT_OF_DISTRIBUTION else None
        res = dataclasses.replace(f, probs=probs, label=self.classes[k], confidence=float(probs[k]),
                                  aleatoric=aleatoric, epistemic=epistemic, total=total,
                                  route=route, track_id=tr.track_id, reason=reason)
        events = []
        if is_new:
            events.append(Event("track_started", {"track_id": tr.track_id, "frame": frame,
                                                 "t": round(t_s, 3), "box": [int(v) for v in f.box],
                                                 "route": route.value, "label": res.label}))
        elif route != old_route:
            events.append(Event("route_changed", {
                "track_id": tr.track_id, "frame": frame, "t": round(t_s, 3),
                "from": old_route.value, "to": route.value, "label": res.label,
                "aleatoric": round(aleatoric, 4), "epistemic": round(epistemic, 4),
                "total": round(total, 4)}))
        return res, events

    def _ended(self, tr: Track, reason: str) -> Event:
        return Event("track_ended", {
            "track_id": tr.track_id, "frame": tr.last_frame, "t": round(tr.last_t, 3),
            "reason": reason, "frames": tr.frames, "duration_s": round(tr.last_t - tr.started_t, 3),
            "route_seconds": {k: round(v, 3) for k, v in tr.route_seconds.items()}})

    def finish(self, reason: str = "run_ended") -> list[Event]:
        """End every live track (end of stream, stream lost)."""
        events = [self._ended(tr, reason) for tr in self.tracks]
        self.tracks = []
        return events


def _centre(box: np.ndarray) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
