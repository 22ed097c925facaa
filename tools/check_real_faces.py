"""Real-face check: accuracy on clear faces and route shares per group, for one or more models.

Reads ``tests/data/real_faces.json`` (faces of the shared media labelled by eye: the label, whether
a person would call the face ambiguous, and whether it is unreadable for a good reason: blur,
dark, profile, occlusion), runs each model's :class:`~uar_stream.pipeline.analyzer.Analyzer` on
every listed photo and video frame (single frames: no tracking or smoothing), matches each
labelled box to the detected face with the best IoU (>= 0.3, one to one) and prints, per model
side by side: accuracy (top class vs label) on clear faces, route shares per group with the
reasons for out_of_distribution, the clear faces rejected as OOD, per-class recall on clear faces
and the faces the detector missed. A check for comparing models, not a training set.

    python tools/check_real_faces.py --model engines/default [--model OTHER_DIR ...]
        [--config configs/default.yaml] [--json out.json] [--limit N]

Progress goes to stderr, the summary to stdout. A directory that is not a complete model (no
manifest.json, e.g. a training run in progress) is skipped with a one-line message; exit status 0
when every model ran, 1 when some were skipped, 2 when none ran.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

from uar_stream import load_config
from uar_stream.errors import UarError
from uar_stream.pipeline.analyzer import Analyzer
from uar_stream.pipeline.tracking import iou_matrix

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "real_faces.json"
MEDIA = ROOT.parent / "shared" / "media"
GROUPS = ("clear", "ambiguous", "blur", "dark", "profile", "occlusion")
ROUTES = ("confident", "ambiguous", "out_of_distribution")
MIN_IOU = 0.3


class ModelSkipped(UarError):
    """A directory that is not (yet) a complete model: skipped, not an error in the model."""


def group_of(face: dict) -> str:
    """The face's group: its unreadable reason, else ambiguous, else clear (an unreadable face
    is judged by why it is unreadable even when it is also ambiguous)."""
    if face["unreadable"]:
        return face["unreadable"]
    return "ambiguous" if face["ambiguous"] else "clear"


def load_faces(path: Path, limit: int | None = None) -> list[dict]:
    """The labelled faces of ``path`` (the first ``limit`` when given)."""
    faces = json.loads(path.read_text())["faces"]
    return faces[:limit] if limit else faces


def read_frames(media: Path, faces: list[dict]) -> dict[tuple[str, int | None], np.ndarray]:
    """Every image the faces lie on, keyed by (media, frame); each file is decoded once."""
    wanted: dict[str, set] = {}
    for f in faces:
        wanted.setdefault(f["media"], set()).add(f["frame"])
    out = {}
    for name, frames in wanted.items():
        path = media / name
        if None in frames:
            img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            if img is None:
                raise FileNotFoundError(f"cannot read {path}")
            out[(name, None)] = img
            continue
        cap = cv2.VideoCapture(str(path))
        last, i = max(frames), 0
        while i <= last:  # sequential reads: seeking is not frame-exact in every codec
            ok, img = cap.read()
            if not ok:
                break
            if i in frames:
                out[(name, i)] = img
            i += 1
        cap.release()
        missing = frames - {k[1] for k in out if k[0] == name}
        if missing:
            raise FileNotFoundError(f"{path}: frames {sorted(missing)} not decoded")
    return out


def open_model(model_dir: str, config: str | None) -> Analyzer:
    """An Analyzer for ``model_dir``; raises UarError (ModelSkipped for a directory without a
    manifest) with a one-line reason when it is not a usable model directory."""
    path = Path(model_dir)
    if path.is_dir() and not (path / "manifest.json").is_file():
        raise ModelSkipped(f"{model_dir}: no manifest.json (not a complete model: a training run "
                           f"in progress?)")
    return Analyzer(load_config(config, {"model.path": model_dir}))


def match(truth: list[list[float]], found: list) -> list[tuple[int | None, float]]:
    """(index of the detection matched to each labelled box or None, its IoU): greedy one to one,
    highest IoU first, IoU >= MIN_IOU."""
    out: list[tuple[int | None, float]] = [(None, 0.0)] * len(truth)
    if not truth or not found:
        return out
    m = iou_matrix(np.array(truth, np.float64), np.array([r.box for r in found], np.float64))
    used: set[int] = set()
    for t, d in sorted(np.argwhere(m >= MIN_IOU).tolist(), key=lambda td: -m[td[0], td[1]]):
        if out[t][0] is None and d not in used:
            out[t] = (d, float(m[t, d]))
            used.add(d)
    return out


def face_record(face: dict, result, iou: float) -> dict:
    """What one model said about one labelled face (result None: the detector missed it)."""
    rec = {"id": face["id"], "group": group_of(face), "label": face["label"],
           "second": face.get("second"), "detected": result is not None}
    if result is None:
        return rec
    rec.update(iou=round(iou, 3), top=result.label, confidence=round(result.confidence, 4),
               route=result.route.value, reason=result.reason,
               aleatoric=round(result.aleatoric, 4), epistemic=round(result.epistemic, 4),
               density=None if result.density is None else round(result.density, 4),
               probs=[round(float(p), 4) for p in result.probs])
    return rec


def run_model(analyzer: Analyzer, faces: list[dict], frames: dict, name: str) -> list[dict]:
    """One record per labelled face, in the data file's order."""
    by_image: dict[tuple, list[int]] = {}
    for i, f in enumerate(faces):
        by_image.setdefault((f["media"], f["frame"]), []).append(i)
    records: list[dict | None] = [None] * len(faces)
    for n, (key, idx) in enumerate(by_image.items(), 1):
        results = analyzer.analyze(frames[key])
        for i, (d, iou) in zip(idx, match([faces[i]["box"] for i in idx], results), strict=True):
            records[i] = face_record(faces[i], None if d is None else results[d], iou)
        print(f"\r{name}: {n}/{len(by_image)} images", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return [r for r in records if r is not None]


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 3) if whole else None


def route_shares(recs: list[dict]) -> dict:
    """Route counts and shares of detected faces, and the OOD reasons."""
    seen = [r for r in recs if r["detected"]]
    counts = Counter(r["route"] for r in seen)
    reasons = Counter(r["reason"] or "epistemic" for r in seen if r["route"] == "out_of_distribution")
    return {"faces": len(recs), "detected": len(seen),
            "routes": {k: counts.get(k, 0) for k in ROUTES},
            "shares": {k: _share(counts.get(k, 0), len(seen)) for k in ROUTES},
            "ood_reasons": dict(sorted(reasons.items()))}


def summarize(records: list[dict]) -> dict:
    """The check's figures for one model, computed from its per-face records."""
    clear = [r for r in records if r["group"] == "clear" and r["detected"]]
    right = [r for r in clear if r["top"] == r["label"]]
    conf = [r for r in clear if r["route"] == "confident"]
    amb = [r for r in records if r["group"] == "ambiguous" and r["detected"]]
    recall = {}
    for c in sorted({r["label"] for r in clear}, key=lambda c: (-sum(r["label"] == c for r in clear), c)):
        of_c = [r for r in clear if r["label"] == c]
        recall[c] = {"correct": sum(r["top"] == c for r in of_c), "n": len(of_c),
                     "recall": _share(sum(r["top"] == c for r in of_c), len(of_c))}
    rejected = [r for r in clear if r["route"] == "out_of_distribution"]
    wrong = Counter(f"{r['label']}->{r['top']}" for r in clear if r["top"] != r["label"])
    return {
        "faces": len(records), "detected": sum(r["detected"] for r in records),
        "missed": [r["id"] for r in records if not r["detected"]],
        "clear": {"n": len(clear), "correct": len(right), "accuracy": _share(len(right), len(clear)),
                  "confident_n": len(conf),
                  "confident_accuracy": _share(sum(r["top"] == r["label"] for r in conf), len(conf))},
        "clear_rejected_ood": {"n": len(rejected),
                               "faces": {r["id"]: r["reason"] or "epistemic" for r in rejected}},
        "ambiguous_top_is_label_or_second": _share(
            sum(r["top"] in (r["label"], r["second"]) for r in amb), len(amb)),
        "recall_clear": recall,
        "errors_clear": dict(wrong.most_common()),
        "groups": {g: route_shares([r for r in records if r["group"] == g]) for g in GROUPS},
    }


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def table_rows(summaries: dict[str, dict]) -> list[tuple[str, list[str]]]:
    """(row name, one cell per model) for the side-by-side summary."""
    s = list(summaries.values())
    rows = [("faces detected / labelled", [f"{x['detected']}/{x['faces']}" for x in s]),
            ("accuracy, clear faces", [f"{x['clear']['accuracy']} ({x['clear']['correct']}/"
                                       f"{x['clear']['n']})" for x in s]),
            ("accuracy, clear & confident", [f"{x['clear']['confident_accuracy']} "
                                             f"(n {x['clear']['confident_n']})" for x in s]),
            ("clear faces rejected as OOD", [str(x["clear_rejected_ood"]["n"]) for x in s]),
            ("ambiguous: top = label/second", [str(x["ambiguous_top_is_label_or_second"]) for x in s])]
    for g in GROUPS:
        cells = []
        for x in s:
            gs = x["groups"][g]
            why = ",".join(f"{k} {v}" for k, v in gs["ood_reasons"].items())
            cells.append(f"{gs['detected']}: " + "/".join(_pct(gs["shares"][k]) for k in ROUTES)
                         + (f" [{why}]" if why else ""))
        rows.append((f"routes c/a/ood {g}", cells))
    classes = sorted({c for x in s for c in x["recall_clear"]},  # most faces first, then by name
                     key=lambda c: (-s[0]["recall_clear"].get(c, {"n": 0})["n"], c))
    for c in classes:
        cells = [f"{x['recall_clear'][c]['correct']}/{x['recall_clear'][c]['n']}"
                 if c in x["recall_clear"] else "-" for x in s]
        rows.append((f"recall, clear {c}", cells))
    return rows


def print_summary(summaries: dict[str, dict]) -> None:
    """The side-by-side table, then each model's misses, OOD-rejected clear faces and errors."""
    rows = table_rows(summaries)
    width = max(len(n) for n in summaries) + 2
    width = max(width, *(len(c) + 2 for _, cells in rows for c in cells))
    print(f"{'':31s}" + "".join(f"{n:{width}s}" for n in summaries))
    for name, cells in rows:
        print(f"{name:31s}" + "".join(f"{c:{width}s}" for c in cells))
    for name, x in summaries.items():
        print(f"{name}: missed by the detector: {', '.join(x['missed']) or 'none'}")
        rej = x["clear_rejected_ood"]["faces"]
        print(f"{name}: clear faces rejected as OOD: "
              f"{', '.join(f'{k} ({v})' for k, v in rej.items()) or 'none'}")
        print(f"{name}: errors on clear faces (label->top): "
              f"{', '.join(f'{k} {v}' for k, v in x['errors_clear'].items()) or 'none'}")
    print("(routes: detected faces: confident/ambiguous/out_of_distribution [OOD reasons]; "
          "clear = not ambiguous, not unreadable)")


def open_models(model_dirs: list[str], config: str | None) -> tuple[dict[str, Analyzer], int]:
    """The Analyzers of the usable model directories (opened before any media is decoded, so a
    bad directory is reported at once), and how many were skipped."""
    analyzers, skipped = {}, 0
    for model_dir in model_dirs:
        try:
            analyzers[model_dir] = open_model(model_dir, config)
        except UarError as e:
            print(f"{'skipped' if isinstance(e, ModelSkipped) else 'error'}: {e}", file=sys.stderr)
            skipped += 1
    return analyzers, skipped


def main(argv: list[str] | None = None) -> int:
    """Run the check for every --model and print (and optionally save) the comparison."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", help="model directory (repeat to compare)")
    ap.add_argument("--config", help="config YAML (default: the library defaults)")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--media", type=Path, default=MEDIA)
    ap.add_argument("--limit", type=int, help="only the first N faces of the data file")
    ap.add_argument("--json", type=Path, help="write the summaries and per-face records here")
    a = ap.parse_args(argv)
    analyzers, skipped = open_models(a.model or ["engines/default"], a.config)
    if not analyzers:
        return 2
    faces = load_faces(a.data, a.limit)
    frames = read_frames(a.media, faces)
    summaries, per_face = {}, {}
    for model_dir, analyzer in analyzers.items():
        with analyzer:
            per_face[model_dir] = run_model(analyzer, faces, frames, model_dir)
        summaries[model_dir] = {"model_id": analyzer.model_id, **summarize(per_face[model_dir])}
    print_summary(summaries)
    if a.json:
        a.json.write_text(json.dumps({"data": str(a.data), "summaries": summaries,
                                      "faces": per_face}, indent=1))
    return 1 if skipped else 0


if __name__ == "__main__":
    sys.exit(main())
