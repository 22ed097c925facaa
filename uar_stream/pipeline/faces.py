"""Face detection (MediaPipe, model bundled in the wheel) and alignment to the canonical crop.

The detector is MediaPipe's BlazeFace from ``mediapipe==0.10.14``, the newest release whose
wheel still ships the .tflite models (later releases download them; see README). It returns
a box and 6 keypoints per face. Alignment maps the eyes, nose tip and mouth centre onto
:data:`uar_stream.model.preprocess.CANONICAL_LANDMARKS_48` with a least-squares similarity
transform, so a live face is framed like a FER2013 training face. Other face models propose the
faces no BlazeFace pass finds: YuNet (:mod:`uar_stream.pipeline.yunet`) in ``auto``, MTCNN
(:mod:`uar_stream.pipeline.mtcnn`) in ``accurate``.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from uar_stream.flow import DetectedFace
from uar_stream.model.preprocess import INPUT_SIZE, canonical_landmarks
from uar_stream.quiet import third_party_quiet

# Keypoint order of MediaPipe face detection. "right" is the subject's right (image left).
RIGHT_EYE, LEFT_EYE, NOSE_TIP, MOUTH_CENTER, RIGHT_EAR, LEFT_EAR = range(6)
#: The keypoints used for alignment, in the order of CANONICAL_LANDMARKS_48.
ALIGN_POINTS = (RIGHT_EYE, LEFT_EYE, NOSE_TIP, MOUTH_CENTER)
#: accurate + detector.mtcnn: MTCNN's smallest face searched (its published default, 20 px).
MTCNN_MIN_FACE_PX = 20
#: An MTCNN box (x0, y0, x1, y1) -> BlazeFace's framing, in units of its width and height: the
#: median offsets of the 131 MTCNN boxes of the shared media that overlap an `accurate` detection
#: (IoU > 0.3; fitted on detections, not on the ground truth). BlazeFace's box sits ~13% lower.
MTCNN_TO_BLAZEFACE = (-0.063, 0.133, 1.092, 0.995)
#: A YuNet box -> BlazeFace's framing, fitted the same way by tools/fit_proposer_framing.py: the median
#: offsets of the 136 YuNet boxes (score >= 0.7) of the shared media that overlap a detection of
#: `accurate` with both proposers off (IoU > 0.3). BlazeFace's box sits ~13% lower here too.
YUNET_TO_BLAZEFACE = (-0.072, 0.130, 1.071, 0.978)
#: The modes that run YuNet when ``plan.yunet`` is set. Measured (docs/faces.md): at its 0.9 it adds 5
#: faces to auto and none to accurate (with or without MTCNN), whose other passes find them; fast stays
#: BlazeFace-only.
YUNET_MODES = ("auto",)
#: auto: a frame where BlazeFace's whole-frame pass is sure (one face, a frame too small to tile, and
#: YuNet added nothing the last time it ran) skips YuNet: YuNet runs on at least one frame in this many.
#: YuNet on every frame of a single-face 640x360 clip cost 55 -> 33 fps for no face; the faces it adds
#: are in groups, crowds and frames where BlazeFace finds none.
YUNET_RECHECK_EVERY = 10
#: NMS ranks (see :func:`nms`): BlazeFace's whole (0) and tile-cut (1) detections, then the proposers.
YUNET_RANK, MTCNN_RANK = 2, 3
#: The 5 landmarks of MTCNN and YuNet, in image terms (both name this order, see their modules).
EYE_IMAGE_LEFT, EYE_IMAGE_RIGHT, NOSE, MOUTH_IMAGE_LEFT, MOUTH_IMAGE_RIGHT = range(5)


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


class _Graph:
    """One MediaPipe BlazeFace graph ('full': 192x192 input, 'short': 128x128)."""

    def __init__(self, model: str, min_confidence: float):
        with third_party_quiet():
            import mediapipe as mp  # imported here: heavy, and only the detector needs it

            self._det = mp.solutions.face_detection.FaceDetection(
                model_selection=1 if model == "full" else 0, min_detection_confidence=min_confidence)
            # The graph opens its calculators (and logs) on its own threads; one frame waits
            # for them, so that their start-up lines fall inside the quiet block.
            self._det.process(np.zeros((64, 64, 3), np.uint8))

    def raw(self, rgb: np.ndarray) -> list[tuple[float, np.ndarray, np.ndarray]]:
        """(score, box xyxy, keypoints (6, 2)) in ``rgb``'s pixels, unfiltered."""
        h, w = rgb.shape[:2]
        res = self._det.process(rgb)
        out = []
        for d in res.detections or []:
            loc = d.location_data
            bb = loc.relative_bounding_box
            x0, y0 = bb.xmin * w, bb.ymin * h
            box = np.array([x0, y0, x0 + bb.width * w, y0 + bb.height * h], np.float64)
            lm = np.array([[k.x * w, k.y * h] for k in loc.relative_keypoints], np.float32)
            if lm.shape == (6, 2):
                out.append((float(d.score[0]), box, lm))
        return out

    def close(self) -> None:
        self._det.close()


@dataclass(frozen=True)
class DetectorPlan:
    """What a detection pass runs: the whole-frame models and the tiling (see module doc)."""

    mode: str = "fast"  # fast | accurate | auto
    model: str = "full"  # fast: the one whole-frame model
    tile_px: int = 480  # side of a square tile (frame pixels)
    tile_overlap: float = 0.3  # share of a tile shared with its neighbour
    tile_from_px: int = 960  # auto: tile frames whose longer side is at least this
    nms_iou: float = 0.3  # overlap (IoU, or 0.7 of the smaller box) that merges two detections
    votes: int = 0  # accurate: agreeing tile passes that keep a face below the score floor; 0 off
    vote_min_confidence: float = 0.5  # accurate: score floor of one pass's vote
    mtcnn: bool = False  # accurate: MTCNN on the whole frame as a proposer
    yunet: bool = False  # YUNET_MODES: YuNet on the whole frame as a proposer
    yunet_min_confidence: float = 0.9  # YuNet's least score


class FaceDetector:
    """MediaPipe face detection in one of three modes (``plan.mode``).

    - ``fast``: one whole-frame pass of ``plan.model`` ('full': faces up to ~5 m, 'short':
      within ~2 m, faster). BlazeFace sees the frame shrunk to 192 (128) px, so faces under
      about a tenth of the frame width are missed, and rows of them vanish entirely.
    - ``accurate``: the full-range model on the whole frame AND on overlapping tiles of
      ``tile_px`` (small faces), plus the short-range model on the whole frame (close-ups,
      semi-profiles), merged by NMS that keeps the best-scoring detection's keypoints; with
      ``plan.mtcnn`` also MTCNN (pipeline/mtcnn.py) on the whole frame, for the faces no
      BlazeFace pass finds (its boxes mapped onto BlazeFace's framing, see ``_proposed``).
    - ``auto``: full + short on the whole frame, with ``plan.yunet`` also YuNet (pipeline/yunet.py,
      mapped the same way); tiles only
      where faces may be small: frames whose longer side is at least ``tile_from_px``, or when
      the previous frame's tiled pass found more faces than this frame's whole-frame pass.

    Not thread-safe: one per thread.
    """

    def __init__(self, model: str = "full", min_confidence: float = 0.5, min_face_px: int = 16,
                 plan: DetectorPlan | None = None):
        self.plan = plan or DetectorPlan(model=model)
        self.min_face_px = min_face_px
        # The full-range graph of mediapipe 0.10.14 does not apply min_detection_confidence
        # (measured: 0.60 detections pass a 0.8 setting), so the score is also checked here.
        self.min_confidence = min_confidence
        needed = {self.plan.model} if self.plan.mode == "fast" else {"full", "short"}
        self._graphs = {m: _Graph(m, min_confidence) for m in sorted(needed)}
        if self.plan.mode == "accurate" and self.plan.votes:
            # The short-range graph applies its own floor; the votes need a lower one, and
            # the other checks keep the configured one, so this is a graph of its own.
            self._graphs["short_vote"] = _Graph("short", self.plan.vote_min_confidence)
        self._mtcnn = None
        if self.plan.mode == "accurate" and self.plan.mtcnn:
            from uar_stream.pipeline.mtcnn import MTCNN  # imported here: torch, for accurate only

            self._mtcnn = MTCNN(min_face_px=MTCNN_MIN_FACE_PX)
        self._yunet = None
        if self.plan.mode in YUNET_MODES and self.plan.yunet:
            from uar_stream.pipeline.yunet import YuNet

            self._yunet = YuNet(score_threshold=self.plan.yunet_min_confidence)
        self.yunet_runs = 0  # frames YuNet ran on (it skips frames BlazeFace is sure of)
        self.reset()

    def reset(self) -> None:
        """Forget earlier frames: ``auto`` decides from the frames it has seen whether to tile
        and whether YuNet may skip a frame, which is right within one video but makes a new
        source's first frames depend on the last one's. A stream calls this when it starts."""
        self._last_tiled = 0  # auto: faces the last tiled pass found
        self._since_yunet = 0  # auto: frames since YuNet last ran
        self._yunet_added = False  # auto: whether YuNet's last run added a face

    @property
    def proposers(self) -> tuple[str, ...]:
        """The other face models this detector runs beside BlazeFace, in NMS rank order."""
        return tuple(n for n, m in (("yunet", self._yunet), ("mtcnn", self._mtcnn)) if m is not None)

    @classmethod
    def from_config(cls, cfg) -> FaceDetector:
        """From a :class:`~uar_stream.config.DetectorConfig`."""
        plan = DetectorPlan(cfg.mode, cfg.model, cfg.tile_px, cfg.tile_overlap, cfg.tile_from_px,
                            cfg.nms_iou, cfg.votes, cfg.vote_min_confidence, cfg.mtcnn, cfg.yunet,
                            cfg.yunet_min_confidence)
        return cls(cfg.model, cfg.min_confidence, cfg.min_face_px, plan)

    def detect(self, frame_bgr: np.ndarray, near=None) -> list[DetectedFace]:
        """Every face in a BGR frame above the configured confidence and size, best first.
        ``near``: boxes (xyxy) of faces followed from an earlier frame; then only the regions
        around them are searched (:meth:`detect_near`), not the whole frame."""
        h, w = frame_bgr.shape[:2]
        rgb = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)
        if near is not None and len(near):
            return self.detect_near(rgb, near)
        p = self.plan
        if p.mode == "fast":
            cands = [(s, b, lm, False) for s, b, lm in self._graphs[p.model].raw(rgb)]
            return self._finish(cands, w, h)
        cands = [(s, b, lm, False) for m in ("full", "short") for s, b, lm in self._graphs[m].raw(rgb)]
        whole = self._finish(list(cands), w, h)
        # the proposers' faces join last: BlazeFace's own checks and votes run as without them
        sure = len(whole) == 1 and max(h, w) < p.tile_from_px and not self._yunet_added
        second = self._proposed(frame_bgr, rgb, sure)
        # auto compares like with like: the last tiled count includes the proposers' faces
        merged = self._finish(cands + second, w, h) if second else whole
        if self._yunet is not None and self._since_yunet == 0:  # YuNet ran on this frame
            self._yunet_added = len(merged) > len(whole)
        tile = p.mode == "accurate" or max(h, w) >= p.tile_from_px or self._last_tiled > len(merged)
        if not tile or max(h, w) <= p.tile_px:
            return merged
        tiled = self._tiled(rgb)
        cands += self._confirmed(rgb, tiled, whole)
        faces = self._finish(cands, w, h)
        voted = []
        if p.mode == "accurate" and p.votes:
            # The votes face the same check as a lone tile detection (the cartoon logo of
            # pyfeat_no_face.mp4 gets 3 votes and fails it).
            voted = self._confirmed(rgb, self._voted(rgb, tiled, faces), [], self.plan.vote_min_confidence)
        if voted or second:  # one merge of everything, the proposers' faces ranked last
            faces = self._finish(cands + second, w, h, extra=voted)
        self._last_tiled = len(faces)
        return faces

    def detect_near(self, rgb: np.ndarray, boxes) -> list[DetectedFace]:
        """Faces in the regions around ``boxes`` (each 3x its box; one over 512 px shrunk by a
        whole factor, INTER_AREA's fast path: any other ratio cost more CPU than the detector,
        which resizes the region to its 128 px itself): the short-range model sees each face
        large, whatever its size in the frame. A face far from every box is not found here
        (the next whole-frame pass finds it)."""
        h, w = rgb.shape[:2]
        cands = []
        for b in np.asarray(boxes, np.float64).reshape(-1, 4):
            cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
            half = 1.5 * max(b[2] - b[0], b[3] - b[1])
            x0, y0 = int(max(0, cx - half)), int(max(0, cy - half))
            x1, y1 = int(min(w, cx + half)), int(min(h, cy + half))
            if min(x1 - x0, y1 - y0) < 8:
                continue
            f = -(-max(x1 - x0, y1 - y0) // 512)
            crop = rgb[y0:y1, x0:x1]
            if f > 1:  # trimmed to whole multiples of f: exactly 1/f, the fast path
                crop = crop[:(y1 - y0) // f * f, :(x1 - x0) // f * f]
                crop = cv2.resize(crop, (crop.shape[1] // f, crop.shape[0] // f),
                                  interpolation=cv2.INTER_AREA)
            k = 1.0 / f
            for s, bb, lm in self._graphs["short" if "short" in self._graphs else "full"].raw(
                    np.ascontiguousarray(crop)):
                cands.append((s, bb / k + np.array([x0, y0, x0, y0]),
                              (lm / k + np.array([x0, y0], np.float32)).astype(np.float32), False))
        return self._finish(cands, w, h)

    def _tiled(self, rgb: np.ndarray, graph: str = "full", tile_px: int | None = None,
               flip: bool = False) -> list:
        """Detections of ``graph`` on overlapping tiles (``tile_px``, default the plan's), each
        tile mirrored first if ``flip``, in frame pixels; a box that touches a tile edge inside
        the frame is marked (the face may be cut there)."""
        h, w = rgb.shape[:2]
        out = []
        for x0, y0, x1, y1 in tile_grid(w, h, tile_px or self.plan.tile_px, self.plan.tile_overlap):
            for s, b, lm in _raw(self._graphs[graph], rgb[y0:y1, x0:x1], flip):
                b = b + np.array([x0, y0, x0, y0])
                lm = lm + np.array([x0, y0], np.float32)
                cut = ((x0 > 0 and b[0] <= x0 + 1) or (y0 > 0 and b[1] <= y0 + 1)
                       or (x1 < w and b[2] >= x1 - 1) or (y1 < h and b[3] >= y1 - 1))
                out.append((s, b, lm, bool(cut)))
        return out

    def _proposed(self, bgr: np.ndarray, rgb: np.ndarray, sure: bool = False) -> list:
        """The other models' faces as candidates in BlazeFace's layout (:func:`five_point_faces`):
        YuNet's (rank :data:`YUNET_RANK`), then MTCNN's (:data:`MTCNN_RANK`). Both rank after every
        BlazeFace detection in NMS, so they only add faces: BlazeFace's keypoints are those the
        canonical crop was measured with, and its boxes those of the ground truth. ``sure``: the
        whole-frame pass needs no second look, so YuNet skips the frame (:data:`YUNET_RECHECK_EVERY`)."""
        out = []
        if self._yunet is not None:
            if sure and self._since_yunet < YUNET_RECHECK_EVERY - 1:
                self._since_yunet += 1
            else:
                self._since_yunet = 0
                self.yunet_runs += 1
                out += five_point_faces(self._yunet.detect(bgr), YUNET_TO_BLAZEFACE, YUNET_RANK)
        if self._mtcnn is not None:
            out += five_point_faces(self._mtcnn.detect(rgb), MTCNN_TO_BLAZEFACE, MTCNN_RANK)
        return out

    def _confirmed(self, rgb: np.ndarray, tiled: list, whole: list[DetectedFace],
                   floor: float | None = None) -> list:
        """Tile detections that a whole-frame pass did not find must be confirmed by the
        short-range model on a crop 3x the box, upscaled to 256 px: small textures (a cartoon
        logo in ``pyfeat_no_face.mp4``) pass the full-range model on a tile, not this check.
        ``floor``: the lowest tile score checked (default ``min_confidence``)."""
        h, w = rgb.shape[:2]
        known = [np.array(f.box, np.float64) for f in whole]
        out = []
        for c in tiled:
            b = c[1]
            if c[0] < (self.min_confidence if floor is None else floor):
                continue
            if any(_overlap(b, k) > self.plan.nms_iou or _inter_min(b, k) >= 0.7 for k in known):
                out.append(c)
                continue
            cx, cy, half = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2, 1.5 * max(b[2] - b[0], b[3] - b[1])
            x0, y0 = int(max(0, cx - half)), int(max(0, cy - half))
            x1, y1 = int(min(w, cx + half)), int(min(h, cy + half))
            if min(x1 - x0, y1 - y0) < 8:
                continue
            k = 256.0 / max(x1 - x0, y1 - y0)
            crop = cv2.resize(rgb[y0:y1, x0:x1], None, fx=k, fy=k, interpolation=cv2.INTER_LINEAR)
            for s, bb, _ in self._graphs["short"].raw(crop):
                if s >= 0.5 and _overlap(bb / k + np.array([x0, y0, x0, y0]), b) > 0.3:
                    out.append(c)
                    break
        return out

    def _voted(self, rgb: np.ndarray, tiled: list, found: list[DetectedFace]) -> list:
        """Faces below the score floor that ``plan.votes`` of five tile passes agree on.

        A weak face (bent down, turned, blurred) scores 0.5-0.65 in one view and not in
        another; a face-like texture rarely passes several *different* views at once. The
        views: full-range on the tiles (``tiled``), on mirrored tiles, on a CLAHE-equalised
        frame (dark faces), and short-range on tiles 2/3 that size (the face larger to the
        model), plain and mirrored. Returns each agreed face's best detection, uncut.
        """
        p = self.plan
        small = max(64, round(p.tile_px * 2 / 3))
        views = [tiled, self._tiled(rgb, flip=True), self._tiled(_clahe(rgb)),
                 self._tiled(rgb, "short_vote", small), self._tiled(rgb, "short_vote", small, True)]
        known = [np.array(f.box, np.float64) for f in found]
        groups: list[list] = []  # [best candidate, views that voted]
        cands = sorted(((c, v) for v, view in enumerate(views) for c in view
                        if c[0] >= p.vote_min_confidence and self._usable(c)), key=lambda cv: -cv[0][0])
        for c, v in cands:
            g = next((g for g in groups if _overlap(c[1], g[0][1]) > 0.4), None)
            if g is None:
                groups.append([c, {v}])
            else:
                g[1].add(v)
        return [(g[0][0], g[0][1], g[0][2], False) for g in groups if len(g[1]) >= p.votes
                and not any(_overlap(g[0][1], k) > p.nms_iou for k in known)]

    def _usable(self, c) -> bool:
        """Big enough, with plausible keypoints (any score)."""
        return (min(c[1][2] - c[1][0], c[1][3] - c[1][1]) >= self.min_face_px
                and _plausible(c[2], c[1][2] - c[1][0]))

    def _finish(self, cands: list, w: int, h: int, extra: tuple | list = ()) -> list[DetectedFace]:
        """Filter (score, size, plausible keypoints), merge by NMS, clip to the frame.
        ``extra``: candidates already checked (the votes), exempt from the score floor."""
        keep = [c for c in cands if c[0] >= self.min_confidence and self._usable(c)] + list(extra)
        faces = []
        for s, b, lm, _ in nms(keep, self.plan.nms_iou):
            box = (int(max(0, b[0])), int(max(0, b[1])), int(min(w, b[2])), int(min(h, b[3])))
            if box[2] > box[0] and box[3] > box[1]:
                faces.append(DetectedFace(box, s, lm))
        return faces

    def close(self) -> None:
        """Release the MediaPipe graphs."""
        for g in self._graphs.values():
            g.close()


def five_point_faces(found: list, framing: tuple, rank: int) -> list:
    """(score, box, 5 landmarks in :data:`EYE_IMAGE_LEFT` ... order) of a proposer -> NMS candidates
    (score, box, 6 keypoints, ``rank``) in BlazeFace's layout: the box mapped onto BlazeFace's
    framing by ``framing`` ((x0, y0, x1, y1) in units of the box's width and height), the mouth
    centre the mean of the two corners; no ear points: the box sides at eye height stand in
    (only the eyes, nose and mouth are used)."""
    r = framing
    out = []
    for s, b, p in found:
        bw, bh = b[2] - b[0], b[3] - b[1]
        box = np.array([b[0] + r[0] * bw, b[1] + r[1] * bh, b[0] + r[2] * bw, b[1] + r[3] * bh])
        lm = np.zeros((6, 2), np.float32)
        lm[RIGHT_EYE], lm[LEFT_EYE] = p[EYE_IMAGE_LEFT], p[EYE_IMAGE_RIGHT]  # the subject's right: image-left
        lm[NOSE_TIP] = p[NOSE]
        lm[MOUTH_CENTER] = (p[MOUTH_IMAGE_LEFT] + p[MOUTH_IMAGE_RIGHT]) / 2
        eye_y = (lm[RIGHT_EYE, 1] + lm[LEFT_EYE, 1]) / 2
        lm[RIGHT_EAR], lm[LEFT_EAR] = (box[0], eye_y), (box[2], eye_y)
        out.append((s, box, lm, rank))
    return out


def _raw(graph: _Graph, rgb: np.ndarray, flip: bool) -> list:
    """``graph.raw`` on ``rgb`` or on its mirror image, in ``rgb``'s pixels. Mirrored, the
    subject's right eye/ear is found where the left was, so those keypoints swap back."""
    if not flip:
        return graph.raw(np.ascontiguousarray(rgb))
    w = rgb.shape[1]
    out = []
    for s, b, lm in graph.raw(np.ascontiguousarray(rgb[:, ::-1])):
        lm = lm[[LEFT_EYE, RIGHT_EYE, NOSE_TIP, MOUTH_CENTER, LEFT_EAR, RIGHT_EAR]].copy()
        lm[:, 0] = w - lm[:, 0]
        out.append((s, np.array([w - b[2], b[1], w - b[0], b[3]]), lm))
    return out


def _clahe(rgb: np.ndarray) -> np.ndarray:
    """Contrast-limited equalisation of the lightness only (colours kept): dark or flat
    faces get their eye and mouth contrast back."""
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)
    lab[:, :, 0] = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(lab[:, :, 0])
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)


def tile_grid(w: int, h: int, tile: int, overlap: float) -> list[tuple[int, int, int, int]]:
    """Square tiles of side ``tile`` (clipped to the frame) covering a w x h frame, neighbours
    sharing ``overlap`` of a tile, evenly spread so the last tile ends at the frame edge."""
    def starts(n: int) -> list[int]:
        if n <= tile:
            return [0]
        step = tile * (1.0 - overlap)
        k = int(np.ceil((n - tile) / step)) + 1
        return [int(round(i * (n - tile) / (k - 1))) for i in range(k)]
    return [(x, y, min(w, x + tile), min(h, y + tile)) for y in starts(h) for x in starts(w)]


def nms(cands: list, iou_thr: float) -> list:
    """Greedy NMS over (score, box, keypoints, rank) candidates: whole detections (rank 0 or
    False) before ones cut by a tile edge (1 or True), then YuNet's (2) and MTCNN's (3), each by score; a
    candidate overlapping a kept one by IoU > ``iou_thr`` or covering 70% of the smaller box is
    dropped, so each face keeps the keypoints of its best detection. Returns the kept ones best
    first: BlazeFace's by score, then the proposers' by score (other scales: a cap on the number
    of faces keeps BlazeFace's)."""
    order = sorted(cands, key=lambda c: (c[3], -c[0]))
    kept: list = []
    for c in order:
        b = c[1]
        if all(_overlap(b, k[1]) <= iou_thr and _inter_min(b, k[1]) < 0.7 for k in kept):
            kept.append(c)
    return sorted(kept, key=lambda c: (int(c[3]) >= YUNET_RANK, -c[0]))


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    inter = _inter(a, b)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _inter_min(a: np.ndarray, b: np.ndarray) -> float:
    small = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return _inter(a, b) / small if small > 0 else 0.0


def _inter(a: np.ndarray, b: np.ndarray) -> float:
    ix = min(a[2], b[2]) - max(a[0], b[0])
    iy = min(a[3], b[3]) - max(a[1], b[1])
    return float(max(ix, 0) * max(iy, 0))


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
