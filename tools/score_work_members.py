"""Early read of an ensemble still in training: its finished members averaged, on PublicTest.

    python tools/score_work_members.py engines/wide/work 0 1 2 3

Loads each listed member's ``final.safetensors`` from the training work directory (the
architecture from its ``config.json``), applies each member's own held-out temperature (its
``metrics.json``), averages the probabilities and prints, on the faces with an emotion majority:
accuracy, Spearman(mean member entropy, annotators' vote entropy) and per-class recall. The
written model (one temperature for all members, the fused engine) can differ slightly.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from safetensors.torch import load_file
from scipy.special import softmax

from uar_stream.labels import CLASSES, emotion_rows, majority_label, vote_entropy
from uar_stream.metrics import spearman
from uar_stream.model.fused_cnn import CnnArch, FusedCnn
from uar_stream.model.uncertainty import entropy
from uar_stream.training.trainer import predict_logits

ROOT = Path(__file__).resolve().parents[1]
PUBLICTEST = ROOT.parent / "shared" / "data" / "ferplus" / "publictest.npz"


def main() -> int:
    """Print the averaged members' figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("work", type=Path, help="training work directory (config.json, member_XX/)")
    ap.add_argument("members", type=int, nargs="+")
    ap.add_argument("--data", type=Path, default=PUBLICTEST)
    a = ap.parse_args()
    with np.load(a.data) as d:
        emotion = emotion_rows(d["votes"])
        images, votes = d["images"][emotion], d["votes"][emotion]
    cfg = json.loads((a.work / "config.json").read_text())
    arch = CnnArch(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg["arch"].items()})
    probs = []
    for m in a.members:
        net = FusedCnn(1, 8, arch)
        state = load_file(str(a.work / f"member_{m:02d}" / "final.safetensors"))
        net.load_state_dict({k: t.float() for k, t in state.items()}, strict=False)
        temperature = json.loads((a.work / f"member_{m:02d}" / "metrics.json").read_text())["temperature"]
        probs.append(softmax(predict_logits(net, images)[:, 0] / temperature, -1))
    p, y = np.mean(probs, 0), majority_label(votes)
    aleatoric = np.mean([entropy(q) for q in probs], 0)
    rho = spearman(aleatoric, vote_entropy(votes))
    recall = {c: round(float((p.argmax(1)[y == i] == i).mean()), 3) for i, c in enumerate(CLASSES[:8])}
    print(f"members {a.members} of {a.work}: accuracy {(p.argmax(1) == y).mean():.4f} ({len(y)} faces), "
          f"Spearman(aleatoric, vote entropy) {rho:.3f}, recall {recall}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
