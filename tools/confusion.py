"""Per-class recall and confusion matrices on a FER+-layout set, for one or more models side by side.

Runs each model directory through the evaluation's :class:`~uar_stream.evaluation.predict.Predictor`
(the fp32 engine, outputs cached under ``--cache``) on the faces with an emotion majority, and
prints per model: accuracy and ECE (majority label, 8 classes), per-class recall and the confusion
matrix (rows: the annotators' majority label, columns: the model's top class, counts), as
Markdown for the model card.

    python tools/confusion.py --model engines/default [--model engines/next ...]
        [--data ../shared/data/ferplus/publictest.npz] [--cache runs/confusion] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from uar_stream import metrics
from uar_stream.datasets.ferplus import load_npz
from uar_stream.evaluation.predict import Predictor
from uar_stream.evaluation.sets import set_key
from uar_stream.labels import emotion_rows, majority_label

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "ferplus" / "publictest.npz"


def confusion(probs: np.ndarray, labels: np.ndarray, classes: int) -> np.ndarray:
    """(classes, classes) counts: row = true (majority) label, column = top predicted class."""
    out = np.zeros((classes, classes), np.int64)
    np.add.at(out, (labels, probs.argmax(1)), 1)
    return out


def model_figures(model: Path, images: np.ndarray, labels: np.ndarray, cache: Path | None) -> dict:
    """Accuracy, ECE, per-class recall and the confusion matrix of one model directory."""
    pred = Predictor(model, cache)
    key = set_key(images, 0)
    s = pred.cached(key, "clean") or pred.predict(images, key, "clean")
    names = list(pred.manifest.classes)
    cm = confusion(s.mean_probs, labels, len(names))
    support = cm.sum(1)
    recall = {n: (round(float(cm[i, i] / support[i]), 3) if support[i] else None)
              for i, n in enumerate(names)}
    return {"model": str(model), "id": pred.model_id, "n": int(len(labels)),
            "accuracy": round(float(metrics.accuracy(s.mean_probs, labels)), 4),
            "ece": round(float(metrics.ece(s.mean_probs, labels, 15)), 4),
            "classes": names, "support": support.tolist(), "recall": recall, "confusion": cm.tolist()}


def markdown(fig: dict) -> str:
    """One model's figures as Markdown: a recall line and the confusion table."""
    names = fig["classes"]
    lines = [f"**{fig['model']}** (model id {fig['id']}): accuracy {fig['accuracy']:.4f}, "
             f"ECE {fig['ece']:.4f}, {fig['n']} faces", "",
             "| majority label \\ predicted | " + " | ".join(names) + " | recall |",
             "|---" * (len(names) + 2) + "|"]
    for i, n in enumerate(names):
        r = fig["recall"][n]
        lines.append(f"| {n} ({fig['support'][i]}) | " + " | ".join(str(v) for v in fig["confusion"][i])
                     + f" | {'-' if r is None else f'{r:.3f}'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Print (and optionally write) every model's figures; 2 when a directory is not a model."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", required=True, help="model directory (repeatable)")
    ap.add_argument("--data", default=str(DATA), help="FER+-layout .npz (default: PublicTest)")
    ap.add_argument("--cache", default=str(ROOT / "runs" / "confusion"),
                    help="prediction cache ('' for none)")
    ap.add_argument("--json", help="also write the figures here")
    a = ap.parse_args(argv)
    faces = load_npz(Path(a.data))
    kept = faces.subset(np.flatnonzero(emotion_rows(faces.votes)))
    labels = majority_label(kept.votes)
    figs = []
    for m in a.model:
        if not (Path(m) / "manifest.json").is_file():
            print(f"{m}: not a model directory (no manifest.json)", file=sys.stderr)
            return 2
        figs.append(model_figures(Path(m), kept.images, labels, Path(a.cache) if a.cache else None))
        print(markdown(figs[-1]) + "\n")
    if len(figs) > 1:
        names = figs[0]["classes"]
        print("| class | " + " | ".join(Path(f["model"]).name for f in figs) + " |")
        print("|---" * (len(figs) + 1) + "|")
        for n in names:
            print(f"| {n} | " + " | ".join(f"{f['recall'][n]:.3f}" if f["recall"][n] is not None else "-"
                                          for f in figs) + " |")
    if a.json:
        Path(a.json).write_text(json.dumps(figs, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
