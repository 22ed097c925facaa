"""`uar-stream train`: train the ensemble (or the LDL baseline, or DINOv2 members)."""
from __future__ import annotations

from uar_stream.cli.options import number


def register(sub) -> dict:
    """Add ``train`` to ``sub``; return {name: handler(args) -> exit code}."""
    _add_train(sub)
    return {"train": _cmd_train}


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train the ensemble (or LDL baseline) on FER+ data")
    p.add_argument("--data", required=True, help="training .npz in the FER+ layout")
    p.add_argument("--test", help="evaluation .npz: leaked images removed, metrics reported")
    p.add_argument("--out", required=True, help="model directory to write")
    p.add_argument("--members", type=number(int, 1, 64), default=5)
    p.add_argument("--epochs", type=number(int, 1, 10000), help="default: 24 (cnn), 10 (dinov2)")
    p.add_argument("--loss", default="soft", help="soft (vote distribution) or majority")
    p.add_argument("--seed", type=number(int, 0), default=0)
    p.add_argument("--batch-size", type=number(int, 1, 65536),
                   help="default: 128 (cnn), 64 (dinov2)")
    p.add_argument("--lr", type=number(float, 1e-9, 10.0),
                   help="peak learning rate; default: 0.1 (cnn, SGD), "
                   "1e-4 (dinov2, AdamW; lower layers get less)")
    p.add_argument("--backbone", default="cnn", choices=("cnn", "dinov2"), help="cnn (default) or dinov2")
    p.add_argument("--dinov2-weights", help="local facebook/dinov2-small safetensors (dinov2 backbone)")
    p.add_argument("--image-size", type=number(int, 14, 1024),
                   help="dinov2: side the 48x48 crop is resized to, a multiple of 14 (default 224)")
    p.add_argument("--max-steps", type=number(int, 0), default=0,
                   help="dinov2: stop each member after this many steps (smoke tests)")
    p.add_argument("--work-dir", help="checkpoints (default: OUT.work); rerun to resume")
    p.add_argument("--recipe", default="live",
                   help="cnn: live (default: live-footage augmentation, class balance, weight "
                   "average, members differ in strength), classic (engines/default's recipe), wide "
                   "(classic on wider members: stem 48, widths 64/128/256) or deep (classic on two "
                   "blocks per stage)")
    p.add_argument("--quick", action="store_true", help="small subset, 1 epoch, 2 members (CI smoke)")


def _cmd_train(a) -> int:
    from uar_stream.training.trainer import TrainConfig, print_summary, train_ensemble

    if a.backbone != "cnn":
        from uar_stream.training.dinov2 import train_dinov2_cli
        return train_dinov2_cli(a)
    # Unset flags take the CNN's defaults (DINOv2 has its own).
    a.epochs = 24 if a.epochs is None else a.epochs
    a.batch_size = 128 if a.batch_size is None else a.batch_size
    a.lr = 0.1 if a.lr is None else a.lr
    common = dict(loss=a.loss, seed=a.seed, batch_size=a.batch_size, lr=a.lr)
    if a.quick:
        cfg = TrainConfig.for_recipe(a.recipe, members=min(a.members, 2), epochs=1, limit=1024, **common)
    else:
        cfg = TrainConfig.for_recipe(a.recipe, members=a.members, epochs=a.epochs, **common)
    print_summary(train_ensemble(a.data, a.test, a.out, cfg, a.work_dir), a.out)
    return 0
