"""Fit a proposer's box onto BlazeFace's framing (issue #15): YUNET_TO_BLAZEFACE of
uar_stream/pipeline/faces.py (``--proposer mtcnn``: the same fit for MTCNN, whose constant came from the
same kind of fit on an earlier cache of `accurate`'s boxes).

    python tools/fit_proposer_framing.py [--proposer yunet|mtcnn] [--score 0.7]    (~1 min on 2 cores)

Runs BlazeFace's `accurate` (configs/default.yaml with both proposers off, so every box is
BlazeFace's own) and the proposer on every image of tests/data/face_boxes.json, positives and
negatives, and prints the median (x0, y0, x1, y1) of the BlazeFace boxes relative to each
overlapping proposer box (IoU > 0.3), in units of its width and height. Fitted on detections,
not on the ground truth: the truth is what the bench scores against.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_detection import MEDIA, TRUTH, load_cases  # noqa: E402
from probe_haar_proposals import framing  # noqa: E402

from uar_stream.config import load_config  # noqa: E402
from uar_stream.pipeline.faces import FaceDetector  # noqa: E402
from uar_stream.pipeline.tracking import iou_matrix  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def proposer(name: str, score: float):
    """image (BGR) -> boxes (N, 4) xyxy of the proposer at ``score`` or more."""
    if name == "yunet":
        from uar_stream.pipeline.yunet import YuNet

        yn = YuNet(score_threshold=score)
        return lambda bgr: np.array([b for _, b, _ in yn.detect(bgr)], np.float64).reshape(-1, 4)
    from uar_stream.pipeline.mtcnn import MTCNN

    mt = MTCNN()
    return lambda bgr: np.array([b for s, b, _ in mt.detect(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
                                 if s >= score], np.float64).reshape(-1, 4)


def main(argv: list[str] | None = None) -> int:
    """Print the fitted framing and the number of pairs it rests on."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--proposer", choices=("yunet", "mtcnn"), default="yunet")
    ap.add_argument("--score", type=float, default=0.7, help="least proposer score fitted")
    a = ap.parse_args(argv)
    pos, neg = load_cases(TRUTH, MEDIA)
    off = {"detector.mode": "accurate", "detector.mtcnn": False, "detector.yunet": False}
    cfg = load_config(ROOT / "configs" / "default.yaml", off).detector
    det = FaceDetector.from_config(cfg)
    find = proposer(a.proposer, a.score)
    blaze, prop = {}, {}
    for c in pos + neg:
        blaze[c[0]] = np.array([f.box for f in det.detect(c[1])], np.float64).reshape(-1, 4)
        prop[c[0]] = find(c[1])
    det.close()
    r, n = framing(prop, blaze), _pairs(prop, blaze)
    print(f"{a.proposer.upper()}_TO_BLAZEFACE = ({', '.join(f'{v:.3f}' for v in r)})  "
          f"# median of {n} pairs, score >= {a.score}")
    return 0


def _pairs(prop: dict, blaze: dict) -> int:
    """How many (proposer box, BlazeFace box) pairs overlap at IoU > 0.3: what the fit rests on."""
    return int(sum((iou_matrix(p, blaze[k]) > 0.3).sum() for k, p in prop.items()
                   if len(p) and len(blaze[k])))


if __name__ == "__main__":
    sys.exit(main())
