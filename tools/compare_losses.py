"""Measure the two training losses side by side: cross-entropy on the majority label (the
reference method) vs cross-entropy against the vote distribution (FER+ "probability" mode).

Trains one member per loss with the same seed, data order and budget, then reports
PublicTest accuracy, ECE and Spearman(entropy, vote entropy) for each.

    python tools/compare_losses.py [--epochs 5] [--members 1] [--out runs/compare_losses]
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from uar_stream.training.trainer import TrainConfig, train_ensemble

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ferplus"


def main() -> None:
    """Train one model per loss (same seed, data order and budget); print their PublicTest figures."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DATA / "train.npz"))
    ap.add_argument("--test", default=str(DATA / "publictest.npz"))
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--members", type=int, default=1)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", default="runs/compare_losses")
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    rows = {}
    for loss in ("soft", "majority"):
        cfg = TrainConfig(members=a.members, epochs=a.epochs, loss=loss, seed=a.seed)
        man = train_ensemble(a.data, a.test, Path(a.out) / loss, cfg)
        e = man.metrics["ensemble"]
        rows[loss] = {"accuracy": e["accuracy"], "ece": e["ece"], "nll": e["nll"],
                      "ece_before_temperature": e["ece_before_temperature"],
                      "spearman_aleatoric_disagreement": e["spearman_aleatoric_disagreement"],
                      "temperature": man.temperature}
    print(f"{'loss':10s} {'acc':>7s} {'ECE':>7s} {'ECE(T=1)':>9s} {'NLL':>7s} {'Spearman':>9s}")
    for loss, r in rows.items():
        print(f"{loss:10s} {r['accuracy']:7.4f} {r['ece']:7.4f} {r['ece_before_temperature']:9.4f} "
              f"{r['nll']:7.4f} {r['spearman_aleatoric_disagreement']:9.4f}")
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out) / "comparison.json").write_text(json.dumps({"epochs": a.epochs, "members": a.members,
                                                             "results": rows}, indent=2))


if __name__ == "__main__":
    main()
