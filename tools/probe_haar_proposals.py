"""Probe (issue #15, round 3): OpenCV's Haar cascades, a second face model, as proposals for
the faces the `accurate` detector misses.

    python tools/probe_haar_proposals.py      (about 3 min on 2 cores; docs/faces.md)

Runs `accurate` (configs/default.yaml) on the ground truth of tests/data/face_boxes.json (cached
in runs/haar_acc.pkl), then each cascade of cv2.data.haarcascades (profileface also on the
mirrored frame) at minNeighbors 3, 5, 8 on the equalised gray frame. A cascade's box is mapped
onto BlazeFace's framing by the median offsets of the cascade boxes that overlap `accurate`'s
own detections (IoU > 0.3; fitted on detections, not on the truth). Prints, per cascade and
setting: the misses (faces >= 24 px) a new box (IoU < 0.3 with every detection) finds at
IoU >= 0.5, the new boxes that match no true face, and the boxes on the negative media.
"""
import dataclasses
import pickle
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_detection import MEDIA, TRUTH, load_cases, match  # noqa: E402

from uar_stream.config import load_config  # noqa: E402
from uar_stream.pipeline.faces import FaceDetector  # noqa: E402
from uar_stream.pipeline.tracking import iou_matrix  # noqa: E402

CASCADES = ("frontalface_alt2", "frontalface_default", "profileface", "frontalface_alt",
            "frontalface_alt_tree")
CACHE = Path(__file__).resolve().parents[1] / "runs" / "haar_acc.pkl"


def accurate_boxes(pos: list, neg: list) -> dict:
    """`accurate`'s boxes per image name (cached: the slow part)."""
    if CACHE.exists():
        return pickle.loads(CACHE.read_bytes())
    CACHE.parent.mkdir(exist_ok=True)
    cfg = dataclasses.replace(load_config("configs/default.yaml").detector, mode="accurate")
    det = FaceDetector.from_config(cfg)
    acc = {c[0]: np.array([f.box for f in det.detect(c[1])], np.float64).reshape(-1, 4) for c in pos + neg}
    CACHE.write_bytes(pickle.dumps(acc))
    return acc


def haar(casc, img: np.ndarray, mirrored: bool, neighbors: int) -> np.ndarray:
    """Boxes (xyxy) of one cascade on the equalised gray frame (and its mirror image)."""
    g = cv2.equalizeHist(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY))
    out = []
    for flip in (False, True) if mirrored else (False,):
        gi = np.ascontiguousarray(g[:, ::-1]) if flip else g
        found = casc.detectMultiScale(gi, scaleFactor=1.1, minNeighbors=neighbors, minSize=(20, 20))
        for x, y, w, h in found if len(found) else []:
            out.append([g.shape[1] - x - w if flip else x, y, (g.shape[1] - x if flip else x + w), y + h])
    return np.array(out, np.float64).reshape(-1, 4)


def framing(boxes: dict, acc: dict) -> np.ndarray:
    """Median (x0, y0, x1, y1) of `accurate`'s boxes relative to overlapping cascade boxes."""
    rel = []
    for name, hb in boxes.items():
        if len(hb) and len(acc[name]):
            for i, j in zip(*np.nonzero(iou_matrix(hb, acc[name]) > 0.3), strict=True):
                w, h = hb[i, 2] - hb[i, 0], hb[i, 3] - hb[i, 1]
                a = acc[name][j]
                rel.append([(a[0] - hb[i, 0]) / w, (a[1] - hb[i, 1]) / h,
                            (a[2] - hb[i, 0]) / w, (a[3] - hb[i, 1]) / h])
    return np.median(np.array(rel), 0) if rel else np.array([0.0, 0.0, 1.0, 1.0])


def mapped(hb: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Cascade boxes in BlazeFace's framing."""
    w, h = hb[:, 2] - hb[:, 0], hb[:, 3] - hb[:, 1]
    return np.stack([hb[:, 0] + r[0] * w, hb[:, 1] + r[1] * h, hb[:, 0] + r[2] * w, hb[:, 1] + r[3] * h], 1)


def main() -> int:
    """Print what each cascade adds to `accurate`."""
    pos, neg = load_cases(TRUTH, MEDIA)
    acc = accurate_boxes(pos, neg)
    misses = set()
    for name, _, truth, sizes in pos:
        hit, _ = match(truth, acc[name], 0.5)
        misses |= {(name, i) for i in range(len(truth)) if sizes[i] >= 24 and not hit[i]}
    print(f"accurate misses {len(misses)} faces >= 24 px")
    root = Path(cv2.data.haarcascades)
    for cname in CASCADES:
        casc = cv2.CascadeClassifier(str(root / f"haarcascade_{cname}.xml"))
        for nb in (3, 5, 8):
            boxes = {c[0]: haar(casc, c[1], cname == "profileface", nb) for c in pos}
            r = framing(boxes, acc)
            found, false_new = [], 0
            for name, _, truth, sizes in pos:
                hb = mapped(boxes[name], r)
                if len(hb) and len(acc[name]):
                    hb = hb[iou_matrix(hb, acc[name]).max(1) < 0.3]  # new proposals only
                if not len(hb):
                    continue
                m = iou_matrix(truth, hb)
                found += [f"{name}#{i} ({int(sizes[i])} px)" for i in range(len(truth))
                          if (name, i) in misses and m[i].max() >= 0.5]
                false_new += int((m.max(0) < 0.5).sum())
            false_neg = sum(len(haar(casc, c[1], cname == "profileface", nb)) for c in neg)
            print(f"{cname:22s} minNeighbors {nb}: misses found {len(found)}/{len(misses)}, new false faces "
                  f"on the positives {false_new}, on the negatives {false_neg} {found}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
