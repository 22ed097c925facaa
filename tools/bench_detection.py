"""Face detection against the committed ground truth: recall and precision by face size, per mode.

Reads ``tests/data/face_boxes.json`` (boxes drawn by eye on the shared photos and sampled video
frames, and the negative media), runs each detector mode on every listed image, matches
detections to faces greedily by IoU (>= 0.5 by default, best first), and prints per mode:
recall by face size (sqrt of the box area), precision on the positive images, false faces on
the negative media, and the median milliseconds per frame (all modes timed in one run).

    python tools/bench_detection.py [--modes fast accurate auto] [--iou 0.5] [--json out.json]
        [--media ../shared/media] [--set detector.tile_px=480 ...]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from uar_stream import load_config
from uar_stream.pipeline.faces import FaceDetector, to_bgr
from uar_stream.pipeline.tracking import iou_matrix

ROOT = Path(__file__).resolve().parents[1]
TRUTH = ROOT / "tests" / "data" / "face_boxes.json"
MEDIA = ROOT.parent / "shared" / "media"
SIZE_BINS = ((0, 24), (24, 48), (48, 96), (96, 100000))


def read_frames(path: Path, frames) -> list[tuple[int | None, np.ndarray]]:
    """(frame index or None, BGR image) for a photo, the listed frames of a video, or all."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is not None:
        return [(None, to_bgr(img))]
    cap = cv2.VideoCapture(str(path))
    out, i = [], 0
    wanted = None if frames == "all" else set(frames)
    while True:
        ok, im = cap.read()
        if not ok:
            break
        if wanted is None or i in wanted:
            out.append((i, im))
        i += 1
    cap.release()
    return out


def match(truth: np.ndarray, found: np.ndarray, iou: float) -> tuple[np.ndarray, int]:
    """Greedy one-to-one matching, highest IoU first: (matched flag per true face, false
    detections)."""
    hit = np.zeros(len(truth), bool)
    if not len(found):
        return hit, 0
    if not len(truth):
        return hit, len(found)
    m = iou_matrix(truth, found)
    used = set()
    for t, d in sorted(np.argwhere(m >= iou).tolist(), key=lambda td: -m[td[0], td[1]]):
        if not hit[t] and d not in used:
            hit[t] = True
            used.add(d)
    return hit, len(found) - len(used)


def load_cases(truth_path: Path, media: Path) -> tuple[list, list]:
    """Positive cases (image, true boxes, sizes) and negative images from the truth file."""
    doc = json.loads(truth_path.read_text())
    pos = []
    by_media: dict[str, list] = {}
    for e in doc["images"]:
        by_media.setdefault(e["media"], []).append(e)
    for name, entries in by_media.items():
        frames = {e["frame"]: e for e in entries}
        wanted = [f for f in frames if f is not None]
        for idx, img in read_frames(media / name, wanted or "all"):
            e = frames.get(idx)
            if e is None:
                continue
            boxes = np.array([f["box"] for f in e["faces"]], np.float64).reshape(-1, 4)
            pos.append((f"{name}@{idx}", img, boxes, np.array([f["size"] for f in e["faces"]])))
    neg = []
    for n in doc["negatives"]:
        neg += [(f"{n['media']}@{i}", img) for i, img in read_frames(media / n["media"], n["frames"])]
    return pos, neg


def bench_mode(det: FaceDetector, pos: list, neg: list, iou: float) -> dict:
    """Recall by size, precision, false faces on negatives and ms per frame for one detector."""
    hits, sizes, false_pos, found_n, ms = [], [], 0, 0, []
    by_res: dict[str, list[float]] = {}
    for _, img, boxes, sz in pos:
        t0 = time.perf_counter()
        faces = det.detect(img)
        ms.append((time.perf_counter() - t0) * 1000)
        by_res.setdefault(_res_class(img), []).append(ms[-1])
        h, fp = match(boxes, np.array([f.box for f in faces], np.float64).reshape(-1, 4), iou)
        hits.append(h)
        sizes.append(sz)
        false_pos += fp
        found_n += len(faces)
    neg_false, neg_where = 0, {}
    for key, img in neg:
        t0 = time.perf_counter()
        n = len(det.detect(img))
        ms.append((time.perf_counter() - t0) * 1000)
        if n:
            neg_false += n
            neg_where[key] = n
    hits_a, sizes_a = np.concatenate(hits), np.concatenate(sizes)
    by_size = {}
    for lo, hi in SIZE_BINS:
        sel = (sizes_a >= lo) & (sizes_a < hi)
        by_size[f"{lo}-{hi if hi < 100000 else ''}"] = [int(hits_a[sel].sum()), int(sel.sum())]
    big = sizes_a >= 24
    return {"faces": int(len(hits_a)), "recall": round(float(hits_a.mean()), 3),
            "recall_24px_up": round(float(hits_a[big].mean()), 3), "recall_by_size": by_size,
            "precision": round((found_n - false_pos) / found_n, 3) if found_n else None,
            "false_on_positives": false_pos, "false_on_negatives": neg_false,
            "negatives_with_faces": neg_where, "ms_per_frame_median": round(statistics.median(ms), 1),
            "ms_median_by_frame_size": {k: round(statistics.median(v), 1) for k, v in sorted(by_res.items())}}


def _res_class(img: np.ndarray) -> str:
    """Frames grouped by their longer side, for the cost of each mode."""
    side = max(img.shape[:2])
    return "<=640px" if side <= 640 else ("641-1280px" if side <= 1280 else ">1280px")


def main(argv: list[str] | None = None) -> int:
    """Print (and optionally save) one row per detector mode."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modes", nargs="+", default=["fast", "auto", "accurate"])
    ap.add_argument("--iou", type=float, default=0.5)
    ap.add_argument("--truth", type=Path, default=TRUTH)
    ap.add_argument("--media", type=Path, default=MEDIA)
    ap.add_argument("--set", nargs="*", default=[], help="config overrides, e.g. detector.tile_px=400")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    overrides = {k: yaml_value(v) for k, v in (s.split("=", 1) for s in a.set)}
    pos, neg = load_cases(a.truth, a.media)
    rows = {}
    for mode in a.modes:
        cfg = load_config(None, {**overrides, "detector.mode": mode}).detector
        det = FaceDetector.from_config(cfg)
        rows[mode] = bench_mode(det, pos, neg, a.iou)
        det.close()
        r = rows[mode]
        sizes = "  ".join(f"{k}px {h}/{n}" for k, (h, n) in r["recall_by_size"].items())
        print(f"{mode:9s} recall {r['recall']:.3f} (>=24px {r['recall_24px_up']:.3f}; {sizes})  "
              f"precision {r['precision']}  false faces on negatives {r['false_on_negatives']}  "
              f"ms/frame median {r['ms_per_frame_median']} "
              f"({', '.join(f'{k} {v}' for k, v in r['ms_median_by_frame_size'].items())})")
    print(f"({len(pos)} images with {rows[a.modes[0]]['faces']} faces, {len(neg)} negative frames; "
          f"IoU >= {a.iou})")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(rows, indent=2))
    return 0


def yaml_value(text: str):
    """A --set value as YAML reads it (numbers, booleans, strings)."""
    import yaml

    return yaml.safe_load(text)


if __name__ == "__main__":
    sys.exit(main())
