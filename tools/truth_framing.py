"""The framing rule behind the re-drawn boxes of tests/data/face_boxes.json, and its fit.

A face the detectors missed is drawn from what a person can place on it: the eye line, the
mouth line (estimated where a scarf or a hand hides it) and the visible cheeks (ear-front to nose
tip for a turned head). The box follows from them with the framing of the faces a detector found
and a person checked (BlazeFace's, which the rest of the file uses):

- height = ``HEIGHT_PER_EYE_MOUTH`` x (mouth_y - eye_y), top ``TOP_ABOVE_EYES`` x (mouth_y - eye_y)
  above the eye line;
- width = ``WIDTH_PER_CHEEKS`` x the cheek span; the box is square, its side the larger of the
  two, centred between the cheeks (and, when the width decides, at ``CENTRE_BELOW_EYES`` x
  (mouth_y - eye_y) below the eye line).

    python tools/truth_framing.py      (about 1 min: refits the constants, re-derives every box)

Fitting: `accurate` runs on every positive image; for each detector-checked face matched at
IoU >= 0.7 the box is related to the detection's eye and mouth keypoints (medians). The cheek
factor is not fitted (no keypoint marks a cheek): BlazeFace's boxes are about 2.5 eye distances
wide, a frontal face about 2.2 cheek to cheek.
"""
from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

HEIGHT_PER_EYE_MOUTH = 2.34
TOP_ABOVE_EYES = 0.71
CENTRE_BELOW_EYES = 0.46
WIDTH_PER_CHEEKS = 1.1


def box_from_lines(eye_y: float, mouth_y: float, cheeks: tuple[float, float]) -> list[int]:
    """[x0, y0, x1, y1] of a face from its eye line, mouth line and cheek span (frame pixels)."""
    em = mouth_y - eye_y
    if em <= 0 or cheeks[1] <= cheeks[0]:
        raise ValueError(f"eye line {eye_y} must lie above mouth line {mouth_y}, "
                         f"and cheeks {cheeks} run left to right")
    side = max(HEIGHT_PER_EYE_MOUTH * em, WIDTH_PER_CHEEKS * (cheeks[1] - cheeks[0]))
    cx, cy = (cheeks[0] + cheeks[1]) / 2, eye_y + CENTRE_BELOW_EYES * em
    return [round(cx - side / 2), round(cy - side / 2), round(cx + side / 2), round(cy + side / 2)]


def fit(truth_path: Path, media: Path) -> dict[str, float]:
    """The framing constants measured on the detector-checked faces."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_detection import load_cases  # the benchmark's own loader

    from uar_stream.config import load_config
    from uar_stream.pipeline.faces import LEFT_EYE, MOUTH_CENTER, RIGHT_EYE, FaceDetector
    from uar_stream.pipeline.tracking import iou_matrix

    doc = json.loads(truth_path.read_text())
    how = {(e["media"], e["frame"]): [f["how"] for f in e["faces"]] for e in doc["images"]}
    pos, _ = load_cases(truth_path, media)
    det = FaceDetector.from_config(dataclasses.replace(load_config(None).detector, mode="accurate"))
    rows = []
    for name, img, boxes, _ in pos:
        found = det.detect(img)
        if not found:
            continue
        media_name, frame = name.rsplit("@", 1)
        kinds = how[(media_name, None if frame == "None" else int(frame))]
        m = iou_matrix(boxes, np.array([f.box for f in found], np.float64))
        for i, b in enumerate(boxes):
            j = int(m[i].argmax())
            if m[i, j] < 0.7 or not kinds[i].startswith("detector"):
                continue
            lm = np.asarray(found[j].landmarks)
            eye = (lm[RIGHT_EYE] + lm[LEFT_EYE]) / 2
            em = lm[MOUTH_CENTER][1] - eye[1]
            h = b[3] - b[1]
            rows.append([h / em, (eye[1] - b[1]) / em, ((b[1] + b[3]) / 2 - eye[1]) / em])
    det.close()
    r = np.median(np.array(rows), 0)
    return {"faces": len(rows), "height_per_eye_mouth": round(float(r[0]), 2),
            "top_above_eyes": round(float(r[1]), 2), "centre_below_eyes": round(float(r[2]), 2)}


def main(argv: list[str] | None = None) -> int:
    """Print the refitted constants and any re-drawn box that no longer follows from its lines."""
    root = Path(__file__).resolve().parents[1]
    truth = root / "tests" / "data" / "face_boxes.json"
    print("fitted on detector-checked faces:", fit(truth, root.parent / "shared" / "media"))
    print(f"in use: height {HEIGHT_PER_EYE_MOUTH}, top {TOP_ABOVE_EYES}, centre {CENTRE_BELOW_EYES}, "
          f"width/cheeks {WIDTH_PER_CHEEKS}")
    bad = 0
    for e in json.loads(truth.read_text())["images"]:
        for f in e["faces"]:
            if "drawn_from" in f:
                d = f["drawn_from"]
                b = box_from_lines(d["eye_y"], d["mouth_y"], tuple(d["cheeks"]))
                if b != f["box"]:
                    bad += 1
                    print(f"{e['media']}@{e['frame']}: box {f['box']}, its lines give {b}")
    print(f"{bad} re-drawn boxes differ from their lines")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
