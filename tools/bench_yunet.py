"""YuNet on onnxruntime (uar-stream's decoder) against OpenCV's FaceDetectorYN on the same file,
side by side in one run: median ms per frame, the two alternating call blocks.

    python tools/bench_yunet.py [--rounds 15] [--calls 5] [--threads 1]

Frames: pyfeat_multi_face.jpg at 640x427 and a 1920x1080 frame of facenet_video.mp4 (the
benchmark's largest). OpenCV runs with ``cv2.setNumThreads(--threads)``, onnxruntime with that
many intra-op threads, so both get the same cores.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import cv2
import numpy as np

from uar_stream.pipeline import yunet as yn
from uar_stream.quiet import third_party_quiet

MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"


def _frames() -> dict[str, np.ndarray]:
    group = cv2.imread(str(MEDIA / "pyfeat_multi_face.jpg"))
    cap = cv2.VideoCapture(str(MEDIA / "facenet_video.mp4"))
    for _ in range(31):
        video = cap.read()[1]
    cap.release()
    return {"640x427": cv2.resize(group, (640, 427), interpolation=cv2.INTER_AREA), "1920x1080": video}


def main() -> None:
    """Time both, print a table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--calls", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    cv2.setNumThreads(a.threads)
    ours = yn.YuNet(threads=a.threads)
    with third_party_quiet():
        ref = cv2.FaceDetectorYN.create(str(yn.WEIGHTS), "", (320, 320), yn.SCORE_THRESHOLD, yn.NMS_IOU,
                                        yn.TOP_K)

    def opencv(img):
        ref.setInputSize((img.shape[1], img.shape[0]))
        return ref.detect(img)[1]

    runs = {"onnxruntime": ours.detect, "opencv": opencv}
    print(f"YuNet-n, {a.threads} thread(s), median ms per frame over {a.rounds} x {a.calls} calls\n")
    print("| frame | faces | opencv | onnxruntime | opencv / onnxruntime |\n| --- | --- | --- | --- | --- |")
    for name, img in _frames().items():
        times: dict[str, list[float]] = {k: [] for k in runs}
        for fn in runs.values():
            fn(img)  # warm-up
        for r in range(a.rounds):
            for k in (list(runs) if r % 2 == 0 else list(runs)[::-1]):
                for _ in range(a.calls):
                    t = time.perf_counter()
                    runs[k](img)
                    times[k].append((time.perf_counter() - t) * 1e3)
        m = {k: statistics.median(v) for k, v in times.items()}
        print(f"| {name} | {len(ours.detect(img))} | {m['opencv']:.2f} | {m['onnxruntime']:.2f} | "
              f"{m['opencv'] / m['onnxruntime']:.2f}x |")


if __name__ == "__main__":
    main()
