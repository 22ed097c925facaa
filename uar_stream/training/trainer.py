"""Train M members (own seed, own data order, own recipe variant) and write a model directory.

The "live" recipe (default) adds, on top of the expression-keeping augmentation, transforms
that mimic live footage (:mod:`uar_stream.training.augment`), a soft class reweighting for the
rare classes (:mod:`uar_stream.training.losses`) and an exponential moving average of the
weights (the member that is written is the average). Members differ on purpose: member m
takes ``live_strengths[m % len]`` and ``balance[m % len]``, so the ensemble mixes augmentation
levels and class emphasis while every member keeps the same architecture (one fused engine).
The "classic" recipe (:meth:`TrainConfig.classic`) is the one engines/default was trained with.

Members are trained one after another as M=1 modules: on CPU, a single member is faster per
image than the grouped M-member module (measured with bf16: 581 vs 316 member-images/s), and it
makes per-member checkpoints natural. Inference fuses them. Training runs channels-last (fp32:
0.90 vs 1.17 s per batch of 128, measured side by side). bf16 autocast is used only where the
CPU computes bf16 natively (``bf16=None``, the default; see :func:`use_bf16`): there oneDNN's
bf16 convolutions are faster than fp32, elsewhere they are emulated and 9x slower.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy.special import softmax
from tqdm import tqdm

from uar_stream.datasets.ferplus import FaceSet, calibration_split, load_npz, training_faces
from uar_stream.errors import ConfigError
from uar_stream.labels import CLASSES, majority_label
from uar_stream.model.fused_cnn import CnnArch, FusedCnn, join_members
from uar_stream.model.preprocess import INPUT_SIZE, PIXEL_MEAN, PIXEL_STD, prepare_batch
from uar_stream.model.store import MANIFEST, Manifest, file_sha256, write_member
from uar_stream.training.augment import AugmentConfig, LiveConfig, augment, live_augment
from uar_stream.training.checkpoint import resume, save, start_member
from uar_stream.training.losses import LOSSES, face_weights, member_loss
from uar_stream.training.report import evaluate_members, fit_temperature

log = logging.getLogger("uar_stream.train")

RECIPES = ("live", "classic", "wide", "deep")
# The wide recipe's member shape: 1.8x the default's FLOPs. One such member alone (24 epochs,
# classic recipe) reached the 5-member default ensemble's PublicTest accuracy (0.830).
WIDE_ARCH = CnnArch(stem=48, widths=(64, 128, 256))
# Two basic blocks per stage (13 convolutions instead of 7) at the shipped widths: on these CPUs a
# training step costs 1.6x the shipped member's (wide: 3.4x), and the wide round showed that width
# alone leaves the ensemble at the shipped accuracy.
DEEP_ARCH = CnnArch(blocks=(2, 2, 2))


@dataclass
class TrainConfig:
    """The CNN recipe. Defaults: the "live" recipe; :meth:`classic` gives engines/default's."""
    members: int = 5
    epochs: int = 24
    batch_size: int = 128
    lr: float = 0.1
    weight_decay: float = 5e-4
    loss: str = "soft"
    seed: int = 0
    # bf16 autocast: None = only where the CPU has native bf16 (avx512_bf16 / amx_bf16). Without
    # it oneDNN emulates bf16 and a step is 9x slower than fp32 (measured on an AVX2-only EPYC:
    # 9.6 vs 1.0 s per batch of 128, wide member), so auto trains in fp32 there.
    bf16: bool | None = None
    calibration_fraction: float = 0.05
    limit: int = 0  # >0: use only this many training faces (quick mode)
    arch: CnnArch = field(default_factory=CnnArch)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    live: LiveConfig = field(default_factory=LiveConfig)
    # Member m trains with live.strength * live_strengths[m % len] (0: no live transforms).
    # Strength scales both how often and how hard each transform fires. Pilot (one member,
    # 6 epochs, PublicTest): strength 1.0 cost 3 accuracy points and 0.07 Spearman against
    # the classic recipe, so the mixture stays at or below 0.8, with one member at 0 (its
    # diversity is the weight average and the class balance only).
    live_strengths: tuple[float, ...] = (0.5, 0.0, 0.8, 0.3, 0.65)
    # Member m weights faces by their vote mass on each class ** -balance[m % len] (0: off),
    # clipped to [1/balance_cap, balance_cap] per class.
    balance: tuple[float, ...] = (0.3, 0.5, 0.3, 0.15, 0.4)
    balance_cap: float = 3.0
    # Exponential moving average of the weights, per optimizer step (0: off; the written
    # member is then the last iterate). 0.999 at 209 steps/epoch averages ~5 epochs, most of
    # them in the low-lr tail of the one-cycle schedule.
    ema_decay: float = 0.999

    @classmethod
    def classic(cls, **kw) -> "TrainConfig":
        """engines/default's recipe: no live transforms, no reweighting, no weight average."""
        return cls(**{"live_strengths": (0.0,), "balance": (0.0,), "ema_decay": 0.0, **kw})

    @classmethod
    def wide(cls, **kw) -> "TrainConfig":
        """The classic recipe on wider members (WIDE_ARCH): the candidate next default (#14)."""
        return cls.classic(**{"arch": WIDE_ARCH, **kw})

    @classmethod
    def deep(cls, **kw) -> "TrainConfig":
        """The classic recipe on deeper members (DEEP_ARCH): the next candidate default (#14)."""
        return cls.classic(**{"arch": DEEP_ARCH, **kw})

    @classmethod
    def for_recipe(cls, recipe: str, **kw) -> "TrainConfig":
        """The named recipe (one of RECIPES) with ``kw`` overriding its fields."""
        if recipe not in RECIPES:
            raise ConfigError(f"train --recipe: {recipe!r} is not allowed; allowed: {', '.join(RECIPES)}")
        return {"live": cls, "classic": cls.classic, "wide": cls.wide, "deep": cls.deep}[recipe](**kw)

    def validate(self) -> None:
        """Raise a ConfigError naming the first invalid ``train.*`` key."""
        validate_common(self)
        self.live.validate()
        if not self.live_strengths or any(v < 0 for v in self.live_strengths):
            raise ConfigError("train.live_strengths: must be one or more values >= 0, "
                              f"got {self.live_strengths}")
        if not self.balance or any(not 0 <= v <= 1 for v in self.balance):
            raise ConfigError(f"train.balance: must be one or more values in [0, 1], got {self.balance}")
        if self.balance_cap < 1:
            raise ConfigError(f"train.balance_cap: must be >= 1, got {self.balance_cap}")
        if not 0 <= self.ema_decay < 1:
            raise ConfigError(f"train.ema_decay: must be in [0, 1), got {self.ema_decay}")
        if not (self.bf16 is None or isinstance(self.bf16, bool)):
            raise ConfigError(f"train.bf16: allowed: true, false, null (auto), got {self.bf16!r}")

    def member_recipe(self, m: int) -> dict:
        """What member m varies: its live-augmentation strength and class-balance power."""
        strength = self.live.strength * self.live_strengths[m % len(self.live_strengths)]
        return {"live_strength": round(strength, 4), "balance": self.balance[m % len(self.balance)]}


def use_bf16(setting: bool | None) -> bool:
    """Whether to autocast to bf16: ``setting`` if given, else whether the CPU has native bf16."""
    if setting is not None:
        return setting
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: fp32 is always correct
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def validate_common(cfg) -> None:
    """The checks every trainer's config shares (loss, counts, held-out fraction)."""
    if cfg.loss not in LOSSES:
        raise ConfigError(f"train.loss: {cfg.loss!r} is not allowed; allowed: {', '.join(LOSSES)}")
    for key in ("members", "epochs", "batch_size"):
        if getattr(cfg, key) < 1:
            raise ConfigError(f"train.{key}: must be >= 1, got {getattr(cfg, key)}")
    if not 0 < cfg.calibration_fraction < 0.5:
        raise ConfigError("train.calibration_fraction: must be in (0, 0.5)")


@torch.no_grad()
def predict_logits(net: torch.nn.Module, images: np.ndarray, batch: int = 512) -> np.ndarray:
    """uint8 faces (N,S,S) -> logits (N, M, C), fp32, eval mode."""
    net.eval()
    out = []
    for i in range(0, len(images), batch):
        x = torch.from_numpy(prepare_batch(images[i:i + batch]))
        out.append(net(x).float().numpy())
    return np.concatenate(out) if out else np.zeros((0, getattr(net, "members", 1), 8), np.float32)


class WeightAverage:
    """Exponential moving average of a module's state (parameters and BN statistics).

    The decay warms up as ``min(decay, (1 + t) / (10 + t))`` so the first steps (random
    init) are forgotten quickly; ``t`` is the global step, restored on resume."""

    def __init__(self, net: torch.nn.Module, decay: float):
        self.decay = decay
        self.module = copy.deepcopy(net).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.steps = 0

    @torch.no_grad()
    def update(self, net: torch.nn.Module) -> None:
        """Take one step towards ``net``'s current state (integer buffers are copied)."""
        self.steps += 1
        d = min(self.decay, (1 + self.steps) / (10 + self.steps))
        for e, v in zip(self.module.state_dict().values(), net.state_dict().values(), strict=True):
            if e.dtype.is_floating_point:
                e.mul_(d).add_(v.detach(), alpha=1 - d)
            else:
                e.copy_(v)

    def state_dict(self) -> dict:
        """The averaged module's state and the step count, for a checkpoint."""
        return {"module": self.module.state_dict(), "steps": self.steps}

    def load_state_dict(self, st: dict) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.module.load_state_dict(st["module"])
        self.steps = int(st["steps"])


def _member_state(net: torch.nn.Module) -> dict:
    return {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}


def _train_epoch(net, opt, sched, ema, batches, cfg: TrainConfig, recipe: dict, gen, desc: str) -> float:
    """One pass over ``batches`` ((x, soft, hard, weight) per step); the mean training loss."""
    net.train()
    live = dataclasses.replace(cfg.live, strength=recipe["live_strength"])
    tot, n = 0.0, 0
    bar = tqdm(batches, desc=desc, leave=False, mininterval=2.0, disable=None)
    for s, (x, soft, hard, w) in enumerate(bar):
        x = augment(x, cfg.augment, gen)
        x = live_augment(x, live, gen, PIXEL_MEAN, PIXEL_STD).contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16(cfg.bf16)):
            logits = net(x)
        loss = member_loss(logits.float()[:, 0], soft, hard, cfg.loss, w)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if ema is not None:
            ema.update(net)
        tot += loss.item() * len(x)
        n += len(x)
        if s % 20 == 0:
            bar.set_postfix(loss=f"{tot / n:.3f}")
    return tot / max(n, 1)


def _batches(train: FaceSet, x_all, weights, cfg: TrainConfig, gen):
    """This epoch's batches in the member's own random order."""
    order = torch.randperm(len(train), generator=gen)
    soft_all, hard_all = torch.from_numpy(train.soft), torch.from_numpy(train.majority)
    for i in range(0, len(train), cfg.batch_size):
        idx = order[i:i + cfg.batch_size]
        yield x_all[idx], soft_all[idx], hard_all[idx], (weights[idx] if weights is not None else None)


def _held_out_acc(net, cal: FaceSet) -> float:
    return float((predict_logits(net, cal.images)[:, 0].argmax(1) == cal.majority).mean())


def _train_member(m: int, train: FaceSet, cal: FaceSet, cfg: TrainConfig, work: Path,
                  on_done=None) -> dict:
    """Train member m, checkpointing every epoch; returns its final M=1 state dict (the
    weight average when ``cfg.ema_decay`` > 0). ``on_done(m, state, history)`` is called once
    when the member finishes training (not when it was already trained)."""
    run, done = start_member(work, m, cfg.seed)
    if done is not None:
        return done
    gen = run.gen
    recipe = cfg.member_recipe(m)
    net = FusedCnn(1, 8, cfg.arch).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=0.9, nesterov=True,
                          weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, epochs=cfg.epochs,
                                                steps_per_epoch=steps_per_epoch, pct_start=0.15)
    ema = WeightAverage(net, cfg.ema_decay) if cfg.ema_decay > 0 else None
    start_epoch, history = 0, []
    if (st := resume(run, net, opt, sched, ema=ema)) is not None:
        start_epoch = int(st["epoch"])
        history = json.loads(st.get("history") or "[]")
        log.info("member %d: resuming after epoch %d", m, start_epoch)
    log.info("member %d recipe: %s", m, recipe)

    x_all = torch.from_numpy(prepare_batch(train.images))
    weights = (torch.from_numpy(face_weights(train.soft, recipe["balance"], cfg.balance_cap))
               if recipe["balance"] > 0 else None)
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        loss = _train_epoch(net, opt, sched, ema, _batches(train, x_all, weights, cfg, gen), cfg, recipe,
                            gen, f"member {m} epoch {epoch + 1}/{cfg.epochs}")
        row = {"epoch": epoch + 1, "loss": round(loss, 4), "held_out_acc": round(_held_out_acc(net, cal), 4),
               "seconds": round(time.perf_counter() - t0, 1)}
        if ema is not None:
            row["held_out_acc_ema"] = round(_held_out_acc(ema.module, cal), 4)
        history.append(row)
        averaged = f" (weight average {row['held_out_acc_ema']:.4f})" if ema is not None else ""
        log.info("member %d epoch %d/%d: train loss %.4f, held-out acc %.4f%s, %.0f s", m, epoch + 1,
                 cfg.epochs, loss, row["held_out_acc"], averaged, row["seconds"])
        save(run, net, opt, sched, epoch + 1, ema=ema, history=json.dumps(history))
    state = _member_state(ema.module if ema is not None else net)
    if on_done is not None:  # before the final file: whoever sees it finds the metrics too
        on_done(m, state, {"recipe": recipe, "history": history})
    write_member(run.final, state, fp16=False)
    return state


def train_ensemble(train_path: str | Path, test_path: str | Path | None, out_dir: str | Path,
                   cfg: TrainConfig, work_dir: str | Path | None = None) -> Manifest:
    """Train cfg.members members and write ``out_dir`` (manifest + member safetensors).

    ``test_path`` (PublicTest) is used only to remove leaked train images and to report
    metrics after training; nothing is selected on it.
    """
    cfg.validate()
    out_dir = Path(out_dir)
    work = Path(work_dir) if work_dir else out_dir.with_name(out_dir.name + ".work")
    t_start = time.perf_counter()
    raw = load_npz(train_path)
    test = load_npz(test_path) if test_path else None
    faces, stats = training_faces(raw, test)
    fit, cal = calibration_split(faces, cfg.calibration_fraction, cfg.seed)
    if cfg.limit:
        rng = np.random.default_rng(cfg.seed)
        fit = fit.subset(np.sort(rng.permutation(len(fit))[:cfg.limit]))
        cal = cal.subset(np.arange(min(len(cal), max(cfg.limit // 4, 64))))
    log.info("data: %s; training on %d, temperature held-out %d", stats, len(fit), len(cal))
    work.mkdir(parents=True, exist_ok=True)
    cfg_text = json.dumps(asdict(cfg), indent=2, default=list)
    if (work / "config.json").is_file() and (work / "config.json").read_text() != cfg_text:
        # Resuming members of another recipe would mix two recipes in one ensemble silently.
        raise ConfigError(f"train --work-dir: {work} was started with another config "
                          f"({work / 'config.json'}); use a new work dir or the same flags")
    (work / "config.json").write_text(cfg_text)

    def member_done(m: int, state: dict, info: dict) -> None:
        metrics = member_metrics(state, cfg.arch, cal, test, test_path, cfg.limit)
        (work / f"member_{m:02d}" / "metrics.json").write_text(json.dumps({**info, **metrics}, indent=2))

    states = [_train_member(m, fit, cal, cfg, work, member_done) for m in range(cfg.members)]

    net = FusedCnn(cfg.members, 8, cfg.arch)
    net.load_state_dict(join_members([{k: v.float() for k, v in s.items()} for s in states]),
                        strict=False)
    temperature = fit_temperature(predict_logits(net, cal.images), cal.majority)
    log.info("temperature fitted on %d held-out train faces: %.3f", len(cal), temperature)
    metrics = split_metrics(lambda images: predict_logits(net, images), test, test_path, temperature,
                            cfg.limit)
    if metrics:  # the rare-class targets are recalls of the ensemble's mean prediction
        keep = test.subset(np.flatnonzero(test.votes.argmax(1) < 8))
        keep = keep.subset(np.arange(min(len(keep), 512))) if cfg.limit else keep
        mean = softmax(predict_logits(net, keep.images) / temperature, axis=-1).mean(1)
        metrics["ensemble"]["recall"] = per_class_recall(np.log(mean), keep.votes)
    man = write_model_dir(
        out_dir, states, backbone="cnn", arch=cfg.arch.to_dict(), temperature=temperature,
        metrics=metrics,
        training={**json.loads(json.dumps(asdict(cfg), default=list)),
                  "data": {"train_sha256": raw.sha256, "test_sha256": test.sha256 if test else None,
                           **stats, "fit": len(fit), "temperature_holdout": len(cal)},
                  "seconds": round(time.perf_counter() - t_start, 1),
                  "torch": torch.__version__})
    log.info("wrote %s (%d members) in %.0f s", out_dir, cfg.members, time.perf_counter() - t_start)
    return man


def member_metrics(state: dict, arch: CnnArch, cal: FaceSet, test: FaceSet | None, test_path,
                   limit: int) -> dict:
    """One finished member alone: its own temperature (fitted on the held-out train faces) and
    its metrics on ``test``, plus the accuracy with horizontal-flip test-time averaging
    (mean of the softmax of a face and of its mirror), so a member can be judged before the
    ensemble is complete."""
    net = FusedCnn(1, 8, arch)
    net.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    temperature = fit_temperature(predict_logits(net, cal.images), cal.majority)
    out = {"temperature": round(temperature, 4)}
    metrics = split_metrics(lambda images: predict_logits(net, images), test, test_path, temperature, limit)
    if metrics:
        keep = test.subset(np.flatnonzero(test.votes.argmax(1) < 8))
        if limit:
            keep = keep.subset(np.arange(min(len(keep), 512)))
        p = sum(softmax(predict_logits(net, im)[:, 0] / temperature, axis=-1)
                for im in (keep.images, keep.images[:, :, ::-1].copy()))
        out.update(metrics["members"][0], data=metrics["data"],
                   accuracy_flip_tta=round(float((p.argmax(1) == majority_label(keep.votes)).mean()), 4),
                   recall=per_class_recall(predict_logits(net, keep.images)[:, 0], keep.votes))
    return out


def per_class_recall(logits: np.ndarray, votes: np.ndarray) -> dict:
    """Recall of each class (majority label), for the rare-class targets."""
    labels, pred = majority_label(votes), logits.argmax(-1)
    return {c: round(float((pred[labels == i] == i).mean()), 4) if (labels == i).any() else None
            for i, c in enumerate(CLASSES)}


def split_metrics(predict, test: FaceSet | None, test_path, temperature: float, limit: int) -> dict:
    """Per-member and ensemble metrics on the faces of ``test`` FER+ keeps. ``predict`` maps
    uint8 faces (N,S,S) to logits (N,M,C); quick mode (``limit``) uses 512 faces only."""
    if test is None:
        return {}
    keep = test.subset(np.flatnonzero(test.votes.argmax(1) < 8))
    if limit:  # quick mode: a smoke test, not a measurement
        keep = keep.subset(np.arange(min(len(keep), 512)))
    metrics = evaluate_members(predict(keep.images), keep.votes, temperature)
    metrics["data"] = {"split": Path(test_path).name, "n": len(keep)}
    return metrics


def write_model_dir(out_dir: Path, states: list[dict], *, backbone: str, arch: dict,
                    temperature: float, metrics: dict, training: dict) -> Manifest:
    """Write one fp16 safetensors per member and the manifest that lists their hashes."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files, hashes = [], {}
    for m, s in enumerate(states):
        name = f"member_{m:02d}.safetensors"
        write_member(out_dir / name, s, fp16=True)
        files.append(name)
        hashes[name] = file_sha256(out_dir / name)
    man = Manifest(
        members=len(states), files=files, arch=arch, backbone=backbone, input_size=INPUT_SIZE,
        normalization={"mean": PIXEL_MEAN, "std": PIXEL_STD, "scale": 1 / 255},
        temperature=round(float(temperature), 4), sha256=hashes, training=training, metrics=metrics)
    (out_dir / MANIFEST).write_text(man.to_json())
    return man


def print_summary(man: Manifest, out: str | Path) -> None:
    """The end-of-training lines both backbones print."""
    if man.metrics:
        e = man.metrics["ensemble"]
        print(f"ensemble on {man.metrics['data']['split']}: accuracy {e['accuracy']:.4f}, "
              f"ECE {e['ece']:.4f}, Spearman(aleatoric, vote entropy) "
              f"{e['spearman_aleatoric_disagreement']:.4f}")
    print(f"wrote {out}")
