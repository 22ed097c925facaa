"""Short pilot: one member per recipe, same seed and budget, PublicTest figures side by side.

    nice -n 15 python tools/pilot_recipe.py --epochs 6 --recipes classic live --out /tmp/pilot

A pilot catches a recipe that hurts; it does not rank recipes that differ by less than its
noise (one member, a short schedule: augmentation-heavy recipes need longer to pay off, so a
small deficit here is expected). ``--ema-decay`` shortens the weight average to the pilot's
schedule (0.999 averages ~5 epochs: most of a 6-epoch run). ``--stem``/``--widths`` pilot a
wider or narrower CNN (e.g. ``--recipes classic --epochs 24 --stem 48 --widths 64 128 256``).
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from uar_stream.model.fused_cnn import CnnArch
from uar_stream.training.trainer import TrainConfig, train_ensemble


def main(argv=None) -> int:
    """Train one member per recipe and print their figures side by side."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data/ferplus/train.npz")
    ap.add_argument("--test", default="../shared/data/ferplus/publictest.npz")
    ap.add_argument("--out", default="/tmp/pilot")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--recipes", nargs="+", default=["classic", "live"], choices=["classic", "live"])
    ap.add_argument("--ema-decay", type=float, default=0.995)
    ap.add_argument("--stem", type=int, help="CNN stem width (default: CnnArch's)")
    ap.add_argument("--widths", type=int, nargs=3,
                    help="CNN stage widths (default: CnnArch's), e.g. 64 128 256")
    a = ap.parse_args(argv)
    arch = CnnArch(**{k: v for k, v in (("stem", a.stem), ("widths", tuple(a.widths or ()) or None))
                      if v is not None})
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    rows = []
    for recipe in a.recipes:
        cfg = (TrainConfig.classic(members=1, epochs=a.epochs, arch=arch) if recipe == "classic"
               else TrainConfig(members=1, epochs=a.epochs, ema_decay=a.ema_decay, arch=arch))
        out = Path(a.out) / recipe
        man = train_ensemble(a.data, a.test, out, cfg, out.with_name(recipe + ".work"))
        metrics_file = out.with_name(recipe + ".work") / "member_00" / "metrics.json"
        member = json.loads(metrics_file.read_text())
        rows.append((recipe, man.metrics["ensemble"], member))
    print("| recipe | accuracy | flip TTA | ECE | Spearman(entropy, vote entropy) "
          "| sadness / anger / fear recall |")
    print("|---|---|---|---|---|---|")
    for recipe, e, m in rows:
        r = m["recall"]
        print(f"| {recipe} | {e['accuracy']:.4f} | {m['accuracy_flip_tta']:.4f} | {e['ece']:.4f} | "
              f"{e['spearman_aleatoric_disagreement']:.4f} | "
              f"{r['sadness']:.3f} / {r['anger']:.3f} / {r['fear']:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
