"""Render the overlay gallery in docs/gallery/: annotated frames of crowded shared media.

Each panel is one frame analysed by the shipped model with tracking (a short run up to the
frame, so ids and smoothing are as a viewer sees them), drawn by the real Overlay, scaled
to 800 px wide.

    python tools/render_gallery.py [--media ../shared/media] [--out docs/gallery] [--mode accurate]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2

from uar_stream import Analyzer, load_config

ROOT = Path(__file__).resolve().parents[1]
MEDIA = ROOT.parent / "shared" / "media"
#: (media, frame to show, frames of tracking before it)
PANELS = (("facenet_video.mp4", 60, 20), ("fr_short_hamilton_clip.mp4", 250, 20),
          ("pyfeat_multi_face.jpg", 0, 0), ("dlib_2008_007676.jpg", 0, 0))


def render(an: Analyzer, path: Path, frame: int, warm: int):
    """The annotated image of ``frame`` of ``path`` after tracking ``warm`` frames before it."""
    cap = cv2.VideoCapture(str(path))
    tracker = an.new_tracker()
    start = max(0, frame - warm)
    cap.set(cv2.CAP_PROP_POS_FRAMES, start)
    image, faces = None, []
    for i in range(start, frame + 1):
        ok, image = cap.read()
        if not ok:
            raise SystemExit(f"{path}: no frame {i}")
        faces, _ = tracker.update(an.analyze(image), i, i / 30.0, image)
    return an.draw(image, faces, fps=None)


def main(argv: list[str] | None = None) -> int:
    """Write one PNG per panel."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--media", type=Path, default=MEDIA)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "gallery")
    ap.add_argument("--mode", default="accurate", help="detector.mode")
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    with Analyzer(load_config(None, {"detector.mode": a.mode})) as an:
        for name, frame, warm in PANELS:
            img = render(an, a.media / name, frame, warm)
            k = 800 / img.shape[1]
            img = cv2.resize(img, None, fx=k, fy=k, interpolation=cv2.INTER_AREA)
            out = a.out / (Path(name).stem + ".png")
            cv2.imwrite(str(out), img, [cv2.IMWRITE_PNG_COMPRESSION, 9])
            print(out, img.shape[1], "x", img.shape[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
