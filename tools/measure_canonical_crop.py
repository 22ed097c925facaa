"""Measure where FER2013 faces put their eyes, nose and mouth (the canonical crop).

Runs the product's own detector on FER+ PublicTest faces (upscaled 4x and padded so the
detector sees context) and prints the median keypoints in 48x48 crop pixels; these are the
CANONICAL_LANDMARKS_48 in uar_stream/preprocess.py. Then checks the result the other way:
aligns the faces in ../shared/media photos with those constants and compares their mean
crop with the mean FER+ face (pixel correlation).

    python tools/measure_canonical_crop.py [--data ../shared/data/ferplus/publictest.npz]
"""
from __future__ import annotations

import argparse
import glob
import os

import cv2
import numpy as np

from uar_stream.pipeline.faces import ALIGN_POINTS, FaceDetector, align_face, to_bgr

UP, PAD = 4, 64


def measure(images: np.ndarray, model: str) -> np.ndarray:
    """Keypoints (K, 6, 2) in 48 px crop coordinates of the faces detected exactly once."""
    det = FaceDetector(model=model, min_confidence=0.5)
    pts = []
    for im in images:
        big = cv2.resize(im, (48 * UP, 48 * UP), interpolation=cv2.INTER_CUBIC)
        big = cv2.copyMakeBorder(big, PAD, PAD, PAD, PAD, cv2.BORDER_REPLICATE)
        faces = det.detect(to_bgr(big))
        if len(faces) == 1:
            pts.append((faces[0].landmarks - PAD) / UP)
    det.close()
    return np.array(pts)


def main() -> None:
    """Print the median keypoints per detector model, then the check on the shared photos."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/data/ferplus/publictest.npz")
    ap.add_argument("--media", default="../shared/media")
    ap.add_argument("--limit", type=int, default=1500)
    args = ap.parse_args()
    images = np.load(args.data)["images"][: args.limit]
    for model in ("full", "short"):
        pts = measure(images, model)
        med = np.median(pts, 0)
        print(f"{model}: detected {len(pts)}/{len(images)}; median keypoints (x, y) in 48 px:")
        for name, i in zip(("right_eye", "left_eye", "nose_tip", "mouth"), ALIGN_POINTS, strict=True):
            iqr_x, iqr_y = (np.subtract(*np.percentile(pts[:, i, k], [75, 25])) for k in (0, 1))
            print(f"  {name:10s} {med[i, 0]:5.1f} {med[i, 1]:5.1f}   IQR x {iqr_x:.1f} y {iqr_y:.1f}")
    mean_fer = images.astype(np.float32).mean(0)
    det = FaceDetector(model="full")
    crops = []
    photos = glob.glob(os.path.join(args.media, "*.jp*g")) + glob.glob(os.path.join(args.media, "*.png"))
    for path in sorted(photos):
        bgr = to_bgr(cv2.imread(path, cv2.IMREAD_UNCHANGED))
        gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        for f in det.detect(bgr):
            crops.append(align_face(gray, f.landmarks).astype(np.float32))
    mean_live = np.mean(crops, 0)
    r = np.corrcoef(mean_fer.ravel(), mean_live.ravel())[0, 1]
    print(f"mean aligned media crop ({len(crops)} faces) vs mean FER+ face: pixel correlation {r:.3f}")
    out = np.hstack([mean_fer, mean_live]).clip(0, 255).astype(np.uint8)
    cv2.imwrite("/tmp/canonical_crop_check.png", cv2.resize(out, (384, 192), interpolation=cv2.INTER_NEAREST))
    print("side-by-side mean faces written to /tmp/canonical_crop_check.png")


if __name__ == "__main__":
    main()
