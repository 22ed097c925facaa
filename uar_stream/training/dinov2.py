"""Fine-tune M DINOv2 ViT members (the paper's configuration) and write a model directory.

Each member: its own seed and data order, a full fine-tune of its own backbone copy (all
members start from the same user-supplied pre-trained weights; without them, from random init)
with AdamW and layer-wise learning-rate decay (the head and top layer get ``lr``, each layer
below ``layer_decay`` times less), the soft-label (vote distribution) loss, bf16 autocast on
CUDA, and a resumable checkpoint per epoch. Output: the same model directory format as the CNN
(manifest with ``backbone: dinov2`` + one safetensors per member) and the same temperature fit
and metrics. Real training needs a GPU: on CPU, ViT-S/14 at 224 trains at a few faces/s.
"""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from uar_stream.datasets.ferplus import FaceSet, calibration_split, load_npz, training_faces
from uar_stream.errors import ConfigError
from uar_stream.model.backbones.dinov2 import (
    VIT_S14,
    DinoV2Arch,
    DinoV2Ensemble,
    DinoV2Member,
    init_member_from_backbone,
    load_backbone_weights,
    load_member_file_state,
    member_file_state,
)
from uar_stream.model.preprocess import prepare_batch
from uar_stream.model.store import Manifest, file_sha256, write_member
from uar_stream.training.augment import AugmentConfig, augment
from uar_stream.training.checkpoint import resume, save, start_member
from uar_stream.training.losses import member_loss
from uar_stream.training.report import fit_temperature
from uar_stream.training.trainer import print_summary, split_metrics, validate_common, write_model_dir

log = logging.getLogger("uar_stream.train")


@dataclass
class DinoV2TrainConfig:
    """The DINOv2 fine-tuning recipe (defaults: the paper's ViT-S/14 configuration)."""
    members: int = 5
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-4  # head + top layer; layer i of L gets lr * layer_decay ** (L - i)
    layer_decay: float = 0.75
    weight_decay: float = 0.05
    warmup_fraction: float = 0.05
    grad_clip: float = 1.0
    loss: str = "soft"
    seed: int = 0
    bf16: bool = True  # autocast on CUDA (CPU trains in fp32)
    calibration_fraction: float = 0.05
    limit: int = 0  # >0: use only this many training faces (quick mode)
    max_steps: int = 0  # >0: stop each member after this many optimizer steps (smoke tests)
    weights: str | None = None  # pre-trained backbone (facebook/dinov2-small safetensors)
    device: str = "auto"
    arch: DinoV2Arch = field(default_factory=lambda: VIT_S14)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def validate(self) -> None:
        """Raise a ConfigError naming the first invalid ``train.*`` key."""
        validate_common(self)
        if not 0 < self.layer_decay <= 1:
            raise ConfigError(f"train.layer_decay: must be in (0, 1], got {self.layer_decay}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ConfigError(f"train.device: {self.device!r} is not allowed; allowed: auto, cpu, cuda")


def resolve_device(name: str) -> torch.device:
    """``train.device`` -> a torch device ("auto": CUDA if available, else CPU)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device: {name!r} requested but CUDA is not available")
    return torch.device(name)


def param_groups(member: DinoV2Member, cfg: DinoV2TrainConfig) -> list[dict]:
    """AdamW groups with layer-wise lr decay; no weight decay on biases, norms, tokens, scales."""
    n_layers = member.arch.layers
    groups: dict[tuple[float, bool], list] = {}
    for name, p in member.named_parameters():
        if name.startswith("backbone.encoder.layer."):
            depth = n_layers - int(name.split(".")[3])  # top layer: 1
        elif name.startswith("backbone.embeddings."):
            depth = n_layers + 1
        else:  # head and the final layernorm
            depth = 0
        no_decay = p.ndim <= 1 or name.endswith(("cls_token", "position_embeddings"))
        groups.setdefault((cfg.layer_decay ** depth, no_decay), []).append(p)
    return [{"params": ps, "lr": cfg.lr * scale, "weight_decay": 0.0 if nd else cfg.weight_decay}
            for (scale, nd), ps in sorted(groups.items(), key=lambda kv: (-kv[0][0], kv[0][1]))]


def _warmup_cosine(total: int, warmup: int):
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))
    return f


@torch.no_grad()
def predict_logits(net: torch.nn.Module, images: np.ndarray, device: torch.device,
                   bf16: bool = True, batch: int = 256) -> np.ndarray:
    """uint8 faces (N, S, S) -> logits (N, M, C) fp32 (eval mode; a member gives M = 1)."""
    net.eval()
    out = []
    for i in range(0, len(images), batch):
        x = torch.from_numpy(prepare_batch(images[i:i + batch])).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16 and device.type == "cuda"):
            y = net(x)
        out.append((y if y.ndim == 3 else y[:, None]).float().cpu().numpy())
    return np.concatenate(out)


def _build_member(cfg: DinoV2TrainConfig, backbone: dict[str, torch.Tensor] | None,
                  device: torch.device, n_train: int):
    """A fresh member on ``device`` with its optimizer and schedule; also the step budget."""
    net = DinoV2Member(cfg.arch, 8)
    if backbone is not None:
        init_member_from_backbone(net, backbone)
    net.to(device)
    # fused: one multi-tensor kernel per step on CUDA instead of one per parameter.
    opt = torch.optim.AdamW(param_groups(net, cfg), betas=(0.9, 0.999), fused=device.type == "cuda")
    total = cfg.epochs * math.ceil(n_train / cfg.batch_size)
    if cfg.max_steps:
        total = min(total, cfg.max_steps)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, _warmup_cosine(total, max(1, int(cfg.warmup_fraction * total))))
    return net, opt, sched, total


def _train_epoch(net, opt, sched, batches, cfg: DinoV2TrainConfig, device: torch.device, gen,
                 step: int, total: int, desc: str) -> tuple[float, int]:
    """One pass over ``batches`` ((x, soft, hard) per step), stopping at ``total`` steps;
    (mean training loss, the step count after it)."""
    net.train()
    use_bf16 = cfg.bf16 and device.type == "cuda"
    tot, n = 0.0, 0
    bar = tqdm(batches, desc=desc, leave=False, mininterval=2.0, disable=None)
    for s, (x, soft, hard) in enumerate(bar):
        if step >= total:
            break
        # Augment the 48x48 crop on the CPU (cheap); the module resizes it on the device.
        x = augment(x, cfg.augment, gen).to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            logits = net(x)
        loss = member_loss(logits.float(), soft.to(device), hard.to(device), cfg.loss)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
        step += 1
        tot += loss.item() * len(x)
        n += len(x)
        if s % 20 == 0:
            bar.set_postfix(loss=f"{tot / n:.3f}")
    return tot / max(n, 1), step


def _batches(train: FaceSet, x_all: torch.Tensor, batch_size: int, gen: torch.Generator):
    """This epoch's batches in the member's own random order (drawn on the first batch)."""
    order = torch.randperm(len(train), generator=gen)
    soft_all, hard_all = torch.from_numpy(train.soft), torch.from_numpy(train.majority)
    for i in range(0, len(train), batch_size):
        idx = order[i:i + batch_size]
        yield x_all[idx], soft_all[idx], hard_all[idx]


def _train_member(m: int, train: FaceSet, cal: FaceSet, cfg: DinoV2TrainConfig, work: Path,
                  backbone: dict[str, torch.Tensor] | None, device: torch.device) -> dict:
    """Train member m, checkpointing every epoch; returns its state in the file layout."""
    run, done = start_member(work, m, cfg.seed)
    if done is not None:
        return done
    net, opt, sched, total = _build_member(cfg, backbone, device, len(train))
    start_epoch, step = 0, 0
    if (st := resume(run, net, opt, sched, map_location=device)) is not None:
        start_epoch, step = int(st["epoch"]), int(st["step"])
        log.info("member %d: resuming after epoch %d (step %d)", m, start_epoch, step)

    x_all = torch.from_numpy(prepare_batch(train.images))
    for epoch in range(start_epoch, cfg.epochs):
        if step >= total:
            break
        t0 = time.perf_counter()
        loss, step = _train_epoch(net, opt, sched, _batches(train, x_all, cfg.batch_size, run.gen), cfg,
                                  device, run.gen, step, total,
                                  f"dinov2 member {m} epoch {epoch + 1}/{cfg.epochs}")
        cal_logits = predict_logits(net, cal.images, device, cfg.bf16)[:, 0]
        cal_acc = float((cal_logits.argmax(1) == cal.majority).mean())
        log.info("dinov2 member %d epoch %d/%d: train loss %.4f, held-out acc %.4f, %d steps, %.0f s",
                 m, epoch + 1, cfg.epochs, loss, cal_acc, step, time.perf_counter() - t0)
        save(run, net, opt, sched, epoch + 1, step=step, loss=loss)
    state = {k: v.detach().float().cpu().contiguous() for k, v in member_file_state(net).items()}
    write_member(run.final, state, fp16=False)
    return state


def train_dinov2(train_path: str | Path, test_path: str | Path | None, out_dir: str | Path,
                 cfg: DinoV2TrainConfig, work_dir: str | Path | None = None) -> Manifest:
    """Train cfg.members DINOv2 members and write ``out_dir`` (manifest + member safetensors).

    As for the CNN, ``test_path`` only removes leaked train images and is reported on after
    training; the temperature is fitted on held-out train faces.
    """
    cfg.validate()
    device = resolve_device(cfg.device)
    out_dir = Path(out_dir)
    work = Path(work_dir) if work_dir else out_dir.with_name(out_dir.name + ".work")
    t_start = time.perf_counter()
    backbone, weights_info = None, None
    if cfg.weights:
        backbone = load_backbone_weights(cfg.weights, cfg.arch)
        weights_info = {"file": Path(cfg.weights).name, "sha256": file_sha256(Path(cfg.weights))}
    else:
        log.warning("dinov2: no --dinov2-weights: backbones start from RANDOM init (expect far lower "
                    "accuracy than the paper's pre-trained ViT-S/14)")
    raw = load_npz(train_path)
    test = load_npz(test_path) if test_path else None
    faces, stats = training_faces(raw, test)
    fit, cal = calibration_split(faces, cfg.calibration_fraction, cfg.seed)
    if cfg.limit:
        rng = np.random.default_rng(cfg.seed)
        fit = fit.subset(np.sort(rng.permutation(len(fit))[:cfg.limit]))
        cal = cal.subset(np.arange(min(len(cal), max(cfg.limit // 4, 64))))
    log.info("dinov2 on %s: %s; training on %d, temperature held-out %d", device, stats, len(fit), len(cal))
    work.mkdir(parents=True, exist_ok=True)
    cfg_json = json.loads(json.dumps(asdict(cfg), default=list))
    (work / "config.json").write_text(json.dumps(cfg_json, indent=2))
    states = [_train_member(m, fit, cal, cfg, work, backbone, device) for m in range(cfg.members)]

    net = DinoV2Ensemble(cfg.members, 8, cfg.arch)
    for member, s in zip(net.nets, states, strict=True):
        load_member_file_state(member, s)
    net.to(device)
    temperature = fit_temperature(predict_logits(net, cal.images, device, cfg.bf16), cal.majority)
    log.info("temperature fitted on %d held-out train faces: %.3f", len(cal), temperature)
    metrics = split_metrics(lambda images: predict_logits(net, images, device, cfg.bf16), test,
                           test_path, temperature, cfg.limit)
    man = write_model_dir(
        out_dir, states, backbone="dinov2", arch=cfg.arch.to_dict(), temperature=temperature,
        metrics=metrics,
        # The weights' file name and hash, not the user's local path.
        training={**cfg_json, "weights": None, "pretrained": weights_info,
                  "data": {"train_sha256": raw.sha256, "test_sha256": test.sha256 if test else None,
                           **stats, "fit": len(fit), "temperature_holdout": len(cal)},
                  "device": str(device), "seconds": round(time.perf_counter() - t_start, 1),
                  "torch": torch.__version__, "transformers": _transformers_version()})
    log.info("wrote %s (%d dinov2 members) in %.0f s", out_dir, cfg.members, time.perf_counter() - t_start)
    return man


def _transformers_version() -> str:
    import transformers

    return transformers.__version__


def config_from_args(a, quick: bool) -> DinoV2TrainConfig:
    """``uar-stream train --backbone dinov2`` flags -> config (unset flags: DINOv2 defaults)."""
    if a.backbone != "dinov2":
        raise ConfigError(f"train --backbone: {a.backbone!r} is not allowed; allowed: cnn, dinov2")
    d = DinoV2TrainConfig()
    image_size = getattr(a, "image_size", None) or (112 if quick else d.arch.image_size)
    try:
        arch = DinoV2Arch(**{**asdict(d.arch), "image_size": image_size})
    except ValueError as e:
        raise ConfigError(f"train --image-size: {e}") from None
    cfg = DinoV2TrainConfig(
        members=min(a.members, 2) if quick else a.members,
        epochs=1 if quick else (a.epochs or d.epochs),
        batch_size=a.batch_size or d.batch_size,
        lr=a.lr if a.lr is not None else d.lr,
        loss=a.loss, seed=a.seed, limit=256 if quick else 0,
        max_steps=getattr(a, "max_steps", 0) or 0, weights=a.dinov2_weights, arch=arch)
    cfg.validate()
    return cfg


def train_dinov2_cli(a, cfg=None) -> int:
    """Entry point of ``uar-stream train --backbone dinov2`` (``cfg``: the CNN's TrainConfig,
    unused: DINOv2 has its own defaults, see :class:`DinoV2TrainConfig`)."""
    tcfg = config_from_args(a, a.quick)
    print_summary(train_dinov2(a.data, a.test, a.out, tcfg, a.work_dir), a.out)
    return 0
