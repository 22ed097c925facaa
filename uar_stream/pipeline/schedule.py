"""Detection and classification where they are needed, not on every frame.

``DetectSchedule`` (the detect thread): a whole-frame pass every ``detect_every`` frames; in
between, the detector looks only around the faces of the previous frame (a region 3x each
box, :meth:`~uar_stream.pipeline.faces.FaceDetector.detect_near`). When a followed face is
not found again, the next frame gets a whole-frame pass.

With ``follow_every`` j > 1, that search runs only every j-th frame between whole-frame
passes; a frame in between keeps the last frame's faces as they were (boxes, crops: their
results are then reused, see below), so a moving face's box lags up to j-1 frames. Whole-frame
passes keep their k-frame rhythm.

``ClassifySchedule`` (the caller's thread): a face that overlaps a face of the previous frame
(IoU >= ``min_iou``: it has not moved or changed size much) reuses that face's result, with
its own box, for up to ``classify_every - 1`` frames; then, or when it moves, it is
classified again. The tracker still runs on every frame, so overlay and events stay per frame.

With both at 1 (the defaults) every frame is detected and classified in full.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import numpy as np

from uar_stream.flow import FaceBatch, FaceResult
from uar_stream.pipeline.tracking import iou_matrix


class DetectSchedule:
    """``regions()`` -> boxes to search around this frame, or None for a whole-frame pass;
    ``done(batch, whole)`` records what the frame's detection found; ``hold()``: this frame
    may keep the last frame's faces (``follow_every``), then ``held()`` counts it."""

    def __init__(self, every: int, follow_every: int = 1):
        self.every, self.follow_every = every, follow_every
        self._since = 0
        self._held = 0  # frames kept since the last search
        self._last: FaceBatch | None = None  # the last detection, kept by held()
        self._boxes: np.ndarray | None = None
        self._whole_next = True

    def hold(self) -> bool:
        """True when this frame keeps the last frame's faces: only between whole-frame
        passes, at most ``follow_every - 1`` frames in a row."""
        return (self.follow_every > 1 and self._held < self.follow_every - 1 and self._last is not None
                and self.regions() is not None)

    def held(self) -> FaceBatch:
        """Count a frame that keeps the last frame's faces; returns them."""
        self._since += 1
        self._held += 1
        return self._last

    def regions(self) -> np.ndarray | None:
        """The followed faces' boxes, or None when this frame needs the whole-frame pass."""
        if self.every <= 1 or self._whole_next or self._boxes is None or not len(self._boxes):
            return None
        return None if self._since >= self.every - 1 else self._boxes

    def done(self, batch: FaceBatch, whole: bool) -> None:
        """Record one frame's detections (``whole``: from a whole-frame pass)."""
        boxes = np.array([f.box for f in batch.faces], np.float64).reshape(-1, 4)
        self._held, self._last = 0, batch
        if whole:
            self._since, self._whole_next = 0, False
        else:
            self._since += 1
            # a followed face not found again: the tracker is unsure, look at everything
            self._whole_next = self._boxes is not None and len(boxes) < len(self._boxes)
        self._boxes = boxes


@dataclass
class _Slot:
    """One face of one frame: its box, frames since it was classified, where its result
    comes from (None: classified in this call) and, once resolved, the result."""

    box: tuple
    age: int
    src: _Slot | None
    result: FaceResult | None = None


class ClassifySchedule:
    """``classify(fn, batches)``: like ``fn(batches)`` (one engine call over several frames),
    but faces that stayed in place reuse their previous result (see the module docstring)."""

    def __init__(self, every: int, min_iou: float = 0.6):
        self.every, self.min_iou = every, min_iou
        self._last: list[_Slot] = []
        self.classified = self.reused = 0

    def _plan(self, b: FaceBatch, prev: list[_Slot]) -> list[_Slot]:
        slots: list[_Slot] = []
        iou = (iou_matrix([f.box for f in b.faces], [s.box for s in prev])
               if prev and b.faces else np.zeros((len(b.faces), 0)))
        claimed: set[int] = set()
        for j, f in enumerate(b.faces):
            k = int(np.argmax(iou[j])) if iou.shape[1] else -1
            if (k >= 0 and k not in claimed and iou[j, k] >= self.min_iou
                    and prev[k].age + 1 < self.every):
                claimed.add(k)
                slots.append(_Slot(f.box, prev[k].age + 1, prev[k]))
            else:
                slots.append(_Slot(f.box, 0, None))
        return slots

    def classify(self, fn: Callable[[list[FaceBatch]], list[list[FaceResult]]],
                 batches: list[FaceBatch]) -> list[list[FaceResult]]:
        """Routed results per frame, in order."""
        if self.every <= 1:
            return fn(batches)
        plans, todo, prev = [], [], self._last
        for b in batches:
            slots = self._plan(b, prev)
            new = [j for j, s in enumerate(slots) if s.src is None]
            todo.append(FaceBatch([b.faces[j] for j in new], b.crops[new], b.frame_shape))
            plans.append((b, slots))
            prev = slots
        out = []
        for (b, slots), res in zip(plans, fn(todo), strict=True):
            fresh = iter(res)
            for f, s in zip(b.faces, slots, strict=True):
                if s.src is None:
                    s.result = next(fresh)
                    self.classified += 1
                else:
                    s.result = dataclasses.replace(s.src.result, box=f.box, landmarks=f.landmarks,
                                                   detection_score=f.score)
                    self.reused += 1
            out.append([s.result for s in slots])
        for s in prev:  # only the last frame's slots are kept: older results can go
            s.src = None
        self._last = prev
        return out
