"""How often each face quality gate fires: on FER+ PublicTest faces (should be rare) and on
every face of the shared media, with the distribution of each measure.

FER+ faces are 48 px images: each is upscaled 4x and padded (as in
tools/measure_canonical_crop.py) so the detector sees it; the size gate is not counted there
(the model's own resolution). Shared media: every frame of the videos and every photo, in the
default detector mode.

    python tools/bench_quality.py [--data ../shared/data/ferplus/publictest.npz] [--limit 2000]
        [--media ../shared/media] [--every 3]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from uar_stream import load_config
from uar_stream.pipeline.faces import FaceDetector, align_face, to_bgr
from uar_stream.pipeline.quality import failed_gate, measure

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
UP, PAD = 4, 64
GATES = ("pose", "too_small", "too_dark", "blurred")


def ferplus_qualities(images: np.ndarray, det: FaceDetector) -> list:
    """Quality of each FER+ face the detector finds once (upscaled, padded)."""
    out = []
    for im in images:
        big = cv2.resize(im, (48 * UP, 48 * UP), interpolation=cv2.INTER_CUBIC)
        big = cv2.copyMakeBorder(big, PAD, PAD, PAD, PAD, cv2.BORDER_REPLICATE)
        faces = det.detect(to_bgr(big))
        if len(faces) == 1:
            out.append(measure(faces[0], align_face(big, faces[0].landmarks)))
    return out


def media_qualities(media: Path, det: FaceDetector, every: int) -> dict[str, list]:
    """Quality of every face per shared file (every ``every``-th video frame)."""
    out: dict[str, list] = {}
    for path in sorted(media.iterdir()):
        if path.suffix.lower() not in (".mp4", ".mov", ".jpg", ".jpeg", ".png"):
            continue
        cap = cv2.VideoCapture(str(path))
        i = 0
        while True:
            ok, img = cap.read()
            if not ok:
                break
            if i % every == 0:
                bgr = to_bgr(img)
                gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
                out.setdefault(path.name, []).extend(
                    measure(f, align_face(gray, f.landmarks)) for f in det.detect(bgr))
            i += 1
    return out


def rates(qs: list, cfg, skip_size: bool = False) -> str:
    """'gate n (share)' for each gate, as a line."""
    if skip_size:
        cfg = type(cfg)(**{**cfg.__dict__, "min_face_px": 0.0})
    fails = [failed_gate(q, cfg) for q in qs]
    n = max(len(qs), 1)
    return ", ".join(f"{g} {fails.count(g)} ({fails.count(g) / n:.1%})" for g in GATES)


def spread(qs: list) -> str:
    """5th / 50th / 95th percentiles of each measure."""
    parts = []
    for name in ("yaw", "pitch", "roll", "brightness", "sharpness"):
        v = np.array([getattr(q, name) for q in qs])
        if len(v):
            p5, p50, p95 = np.percentile(v, [5, 50, 95])
            parts.append(f"{name} {p5:.0f}/{p50:.0f}/{p95:.0f}")
    return "  ".join(parts)


def main(argv: list[str] | None = None) -> int:
    """Print the gate rates on FER+ and on the shared media."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=SHARED / "data" / "ferplus" / "publictest.npz")
    ap.add_argument("--limit", type=int, default=2000)
    ap.add_argument("--media", type=Path, default=SHARED / "media")
    ap.add_argument("--every", type=int, default=3)
    a = ap.parse_args(argv)
    cfg = load_config(None)
    det = FaceDetector.from_config(cfg.detector)
    fer = ferplus_qualities(np.load(a.data)["images"][: a.limit], det)
    print(f"FER+ PublicTest: {len(fer)} faces detected of {a.limit}: {rates(fer, cfg.quality, True)}")
    print(f"  p5/p50/p95: {spread(fer)}")
    media = media_qualities(a.media, det, a.every)
    allq = [q for v in media.values() for q in v]
    print(f"shared media: {len(allq)} faces: {rates(allq, cfg.quality)}")
    print(f"  p5/p50/p95: {spread(allq)}")
    for name, qs in media.items():
        print(f"  {name}: {len(qs)} faces: {rates(qs, cfg.quality)}")
    det.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
