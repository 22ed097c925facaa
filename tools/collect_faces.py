"""Collect aligned 48x48 face crops from your own videos or photos into an .npz that
``uar-stream calibrate --data`` accepts (``images`` only: no annotator votes).

The crops come from the same detector and alignment as ``uar-stream run``, so the thresholds
fitted on them hold for what the analyzer will see from that camera.

    python tools/collect_faces.py --source lobby.mp4 --source door.jpg --out my_faces.npz --every 5
    uar-stream calibrate --data my_faces.npz --out configs/lobby.yaml --ambiguous-rate 0.1
"""
from __future__ import annotations

import argparse
import sys

import cv2
import numpy as np

from uar_stream.model.preprocess import INPUT_SIZE
from uar_stream.pipeline.faces import FaceDetector, align_face, to_bgr
from uar_stream.pipeline.sources import open_source


def collect(sources: list[str], every: int, max_faces: int, detector: str,
            min_confidence: float) -> np.ndarray:
    """Aligned 48x48 crops of every detected face on every ``every``-th frame, at most ``max_faces``."""
    det = FaceDetector(detector, min_confidence)
    crops: list[np.ndarray] = []
    try:
        for spec in sources:
            with open_source(spec) as src:
                while len(crops) < max_faces:
                    frame = src.read()
                    if frame is None:
                        break
                    if frame.index % every:
                        continue
                    bgr = to_bgr(frame.image)
                    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
                    crops += [align_face(gray, f.landmarks, INPUT_SIZE) for f in det.detect(bgr)]
    finally:
        det.close()
    return np.stack(crops[:max_faces]) if crops else np.zeros((0, INPUT_SIZE, INPUT_SIZE), np.uint8)


def main(argv: list[str] | None = None) -> int:
    """Parse the options, collect the faces, write the .npz."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", action="append", required=True,
                   help="video, image or webcam index (repeatable)")
    p.add_argument("--out", required=True, help=".npz to write (array 'images', uint8 [N,48,48])")
    p.add_argument("--every", type=int, default=5,
                   help="use every n-th frame (neighbouring frames repeat faces)")
    p.add_argument("--max-faces", type=int, default=5000)
    p.add_argument("--detector", default="full", choices=("full", "short"))
    p.add_argument("--min-confidence", type=float, default=0.5)
    a = p.parse_args(argv)
    images = collect(a.source, max(1, a.every), a.max_faces, a.detector, a.min_confidence)
    if len(images) == 0:
        print("no faces found", file=sys.stderr)
        return 1
    np.savez_compressed(a.out, images=images)
    print(f"wrote {len(images)} faces to {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
