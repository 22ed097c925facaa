"""Tracking: stable face ids across frames, per-track smoothing, hysteresis on the route.

Association is IoU + Hungarian (``scipy.optimize.linear_sum_assignment``) against each
track's box predicted with a constant-velocity model, so walking faces keep their ids.
(Why not a packaged tracker: supervision removed ByteTrack in 0.31, roboflow's ``trackers``
requires opencv-python, a second ``cv2`` beside our opencv-contrib-python, and norfair 2.3
pins numpy<2. Faces are few per frame; this is ~100 lines we can test.)

A track is *tentative* until it has been seen on ``min_hits`` consecutive frames: its faces
are shown without an id and it emits no events, so a one-frame false detection never becomes
a track. A confirmed track survives up to ``max_age`` missed frames; a face that comes back
where the track was predicted (IoU), or near it with a similar look (a 16x16 thumbnail of the
box, when the frame is given), keeps its id.

Per track, the probabilities (C,) and both uncertainties are smoothed (EMA or a window
mean). What is *shown* is one consistent snapshot of those values: the label is always the
top class of the shown distribution, and the route the one its uncertainties (or a quality
gate) give. A change of route or label is shown only after ``hysteresis_frames`` consecutive
frames propose it; until then the last shown snapshot stays whole (never a stale class beside
a current probability).
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


class _Shown:
    """The snapshot a track shows: replaced by the newest smoothed state when that state has
    the same key (route, and the label when confident) or after ``k`` consecutive frames
    propose the same new key; otherwise the previous snapshot is kept whole."""

    def __init__(self, k: int):
        self.k = k
        self.value: FaceResult | None = None
        self._cand, self._count = None, 0

    @staticmethod
    def key(f: FaceResult) -> tuple:
        return (f.route, f.reason, f.label if f.route is Route.CONFIDENT else None)

    def update(self, proposed: FaceResult) -> FaceResult:
        if self.value is None or self.key(proposed) == self.key(self.value):
            self.value, self._cand, self._count = proposed, None, 0
            return self.value
        key = self.key(proposed)
        if key == self._cand:
            self._count += 1
        else:
            self._cand, self._count = key, 1
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
    shown: _Shown  # what the track shows (see the module docstring)
    last_frame: int = 0
    last_t: float = 0.0
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))  # box centre, px/frame
    missed: int = 0
    frames: int = 0
    hits: int = 0  # consecutive frames seen while tentative
    confirmed: bool = False
    look: np.ndarray | None = None  # appearance descriptor of the last box (thumbnail)
    route_seconds: dict = field(default_factory=lambda: {r.value: 0.0 for r in Route})

    def predicted(self) -> np.ndarray:
        """The box expected this frame (constant velocity over the missed frames)."""
        shift = self.velocity * (self.missed + 1)
        return self.box + np.array([shift[0], shift[1], shift[0], shift[1]])

    @property
    def route(self) -> Route:
        """The route shown now."""
        return self.shown.value.route


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
    """``update(faces, frame, t_s, image) -> (faces with track_id and shown values, events)``.

    One tracker per stream (it holds state). Events: track_started (when a track is
    confirmed, after ``min_hits`` frames), route_changed, track_ended
    (:class:`~uar_stream.flow.Event`). Faces of tentative tracks come out without an id.
    """

    def __init__(self, cfg: TrackingConfig, router: Router, classes: tuple[str, ...]):
        self.cfg, self.router, self.classes = cfg, router, tuple(classes)
        self.tracks: list[Track] = []
        self._next_id = 1
        self.total_tracks = 0  # confirmed tracks
        self._cuts = SceneCutDetector(cfg.scene_cut) if cfg.scene_cut > 0 else None

    def _new_track(self, box: np.ndarray, frame: int, t_s: float) -> Track:
        c = self.cfg
        tr = Track(0, box, frame, t_s, _Smoother(c.smoothing, c.alpha, c.window),
                   _Shown(c.hysteresis_frames), last_frame=frame, last_t=t_s)
        self.tracks.append(tr)
        return tr

    def _match(self, boxes: np.ndarray, looks: list) -> dict[int, Track]:
        """Detection index -> live track: Hungarian assignment on 1 - IoU (predicted or last
        box), then faces left over near a confirmed track that missed frames, if they look
        alike (ids across short misses, when the box jumped)."""
        if not self.tracks or not len(boxes):
            return {}
        pred = np.stack([t.predicted() for t in self.tracks])
        last = np.stack([t.box for t in self.tracks])
        # The better of the predicted and the last box: detector jitter makes a face's
        # velocity noisy, and a bad prediction must not split a face that barely moved.
        iou = np.maximum(iou_matrix(pred, boxes), iou_matrix(last, boxes))
        rows, cols = linear_sum_assignment(1.0 - iou)
        out = {int(c): self.tracks[r] for r, c in zip(rows, cols, strict=True)
               if iou[r, c] >= max(self.cfg.min_iou, 1e-6)}
        lost = [t for t in self.tracks if t.confirmed and t.missed > 0 and t not in out.values()]
        for i in range(len(boxes)):
            if i in out or not lost:
                continue
            best = min(lost, key=lambda t: _gap(t.predicted(), boxes[i]))
            if _gap(best.predicted(), boxes[i]) < 1.0 and _alike(best.look, looks[i]):
                out[i] = best
                lost.remove(best)
        return out

    def update(self, faces: list[FaceResult], frame: int, t_s: float,
               image: np.ndarray | None = None) -> tuple[list[FaceResult], list[Event]]:
        """faces: one frame's results; image (optional): the frame, for scene cuts and looks."""
        events: list[Event] = []
        if image is not None and self._cuts is not None and self._cuts.is_cut(image):
            events.extend(self.finish("scene_cut"))
        boxes = np.array([f.box for f in faces], np.float64).reshape(-1, 4)
        looks = [_look(image, b) for b in boxes]
        matched = self._match(boxes, looks)
        out: list[FaceResult] = []
        seen: set[int] = set()
        for i, f in enumerate(faces):
            tr = matched.get(i)
            if tr is None:
                tr = self._new_track(boxes[i], frame, t_s)
            else:
                if tr.confirmed:  # time since the last sighting counts for the route shown
                    tr.route_seconds[tr.route.value] += max(0.0, t_s - tr.last_t)
                step = (_centre(boxes[i]) - _centre(tr.box)) / (tr.missed + 1)
                tr.velocity = 0.5 * tr.velocity + 0.5 * step
                tr.box = boxes[i]
            tr.missed, tr.last_frame, tr.last_t = 0, frame, t_s
            tr.frames += 1
            tr.look = looks[i] if looks[i] is not None else tr.look
            seen.add(id(tr))
            r, ev = self._show(tr, f, frame, t_s)
            out.append(r)
            events.extend(ev)
        self.tracks = [t for t in self.tracks if id(t) in seen or self._keep_unseen(t, events)]
        return out, events

    def _keep_unseen(self, tr: Track, events: list[Event]) -> bool:
        """A track not seen this frame: tentative ones end at once (silently), confirmed
        ones after ``max_age`` missed frames."""
        tr.missed += 1
        if not tr.confirmed:
            return False
        if tr.missed > self.cfg.max_age:
            events.append(self._ended(tr, "lost"))
            return False
        return True

    def _propose(self, f: FaceResult, probs: np.ndarray, a: float, e: float, t: float) -> FaceResult:
        """The smoothed state as a result: label = top class of ``probs``; the route from the
        smoothed uncertainties, unless a quality gate rejected this frame's face."""
        if f.route is Route.OUT_OF_DISTRIBUTION and f.reason not in (None, *MODEL_REASONS):
            route, reason = Route.OUT_OF_DISTRIBUTION, f.reason
        else:
            route, reason = self._route(a, e, f)
        k = int(np.argmax(probs))
        return dataclasses.replace(f, probs=probs, label=self.classes[k], confidence=float(probs[k]),
                                   aleatoric=a, epistemic=e, total=t, route=route, reason=reason)

    def _route(self, a: float, e: float, f: FaceResult) -> tuple[Route, str | None]:
        decide = getattr(self.router, "decide", None)  # routers with a density gate
        if decide is not None:
            return decide(a, e, getattr(f, "density", None))
        route = self.router.route(a, e)
        return route, ("epistemic" if route is Route.OUT_OF_DISTRIBUTION else None)

    def _show(self, tr: Track, f: FaceResult, frame: int, t_s: float):
        x = np.concatenate([f.probs, [f.aleatoric, f.epistemic, f.total]]).astype(np.float64)
        s = tr.smoother.update(x)
        old_route = tr.shown.value.route if tr.shown.value is not None else None
        proposed = self._propose(f, s[:-3].astype(np.float32), *(float(v) for v in s[-3:]))
        shown = tr.shown.update(proposed)
        # The face's own box and keypoints; everything else is the shown snapshot.
        res = dataclasses.replace(shown, box=f.box, landmarks=f.landmarks,
                                  detection_score=f.detection_score, track_id=None)
        events = []
        if not tr.confirmed:
            tr.hits += 1
            if tr.hits < self.cfg.min_hits:
                return res, events
            tr.confirmed, tr.track_id = True, self._next_id
            self._next_id += 1
            self.total_tracks += 1
            events.append(Event("track_started", {
                "track_id": tr.track_id, "frame": frame, "t": round(t_s, 3),
                "first_frame": tr.started_frame, "box": [int(v) for v in f.box],
                "route": shown.route.value, "label": shown.label}))
            tr.started_t = t_s
        elif shown.route != old_route:
            events.append(Event("route_changed", {
                "track_id": tr.track_id, "frame": frame, "t": round(t_s, 3),
                "from": old_route.value, "to": shown.route.value, "label": shown.label,
                "aleatoric": round(shown.aleatoric, 4), "epistemic": round(shown.epistemic, 4),
                "total": round(shown.total, 4)}))
        return dataclasses.replace(res, track_id=tr.track_id), events

    def _ended(self, tr: Track, reason: str) -> Event:
        return Event("track_ended", {
            "track_id": tr.track_id, "frame": tr.last_frame, "t": round(tr.last_t, 3),
            "reason": reason, "frames": tr.frames, "duration_s": round(tr.last_t - tr.started_t, 3),
            "route_seconds": {k: round(v, 3) for k, v in tr.route_seconds.items()}})

    def finish(self, reason: str = "run_ended") -> list[Event]:
        """End every live track (end of stream, stream lost); tentative ones silently."""
        events = [self._ended(tr, reason) for tr in self.tracks if tr.confirmed]
        self.tracks = []
        return events


#: Reasons the model (or its router) gives; the tracker recomputes these from smoothed values.
MODEL_REASONS = ("epistemic", "density")


def _centre(box: np.ndarray) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])


def _gap(a: np.ndarray, b: np.ndarray) -> float:
    """Centre distance in units of the boxes' mean width, plus how far their sizes differ."""
    w = max(((a[2] - a[0]) + (b[2] - b[0])) / 2, 1.0)
    size = abs(np.log(max(b[2] - b[0], 1.0) / max(a[2] - a[0], 1.0)))
    return float(np.hypot(*(_centre(a) - _centre(b))) / w + size)


def _look(image: np.ndarray | None, box: np.ndarray) -> np.ndarray | None:
    """A small appearance descriptor: the box's 16x16 grayscale thumbnail, zero mean, unit norm."""
    if image is None:
        return None
    import cv2

    h, w = image.shape[:2]
    x0, y0 = max(0, int(box[0])), max(0, int(box[1]))
    x1, y1 = min(w, int(box[2])), min(h, int(box[3]))
    if x1 - x0 < 4 or y1 - y0 < 4:
        return None
    crop = image[y0:y1, x0:x1]
    gray = crop if crop.ndim == 2 else cv2.cvtColor(crop[:, :, :3], cv2.COLOR_BGR2GRAY)
    v = cv2.resize(gray, (16, 16), interpolation=cv2.INTER_AREA).astype(np.float32).ravel()
    v -= v.mean()
    n = float(np.linalg.norm(v))
    return v / n if n > 1e-6 else None


def _alike(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    """Two looks of one face (correlation >= 0.5); without looks, position decides alone."""
    return a is None or b is None or float(a @ b) >= 0.5
