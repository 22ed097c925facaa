"""Per-member training state shared by both trainers: the member's work directory, its
seeding, and the checkpoint written every epoch (resumed from on a rerun)."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file

log = logging.getLogger("uar_stream.train")


@dataclass
class MemberRun:
    index: int
    dir: Path
    final: Path  # the finished member's weights (safetensors)
    ckpt: Path
    gen: torch.Generator  # the member's data order and augmentation draws


def start_member(work: Path, m: int, seed: int) -> tuple[MemberRun, dict | None]:
    """Set up member m: (its run, its finished state if it was already trained, else None).
    Seeds torch and the member's generator from ``seed * 1000 + m``."""
    mdir = work / f"member_{m:02d}"
    mdir.mkdir(parents=True, exist_ok=True)
    final = mdir / "final.safetensors"
    run = MemberRun(m, mdir, final, mdir / "checkpoint.pt", torch.Generator())
    if final.is_file():
        log.info("member %d: already trained (%s), skipping", m, final)
        return run, load_file(str(final))
    torch.manual_seed(seed * 1000 + m)
    run.gen.manual_seed(seed * 1000 + m)
    return run, None


def resume(run: MemberRun, net, opt, sched, map_location=None) -> dict | None:
    """Load the member's checkpoint into net/opt/sched/generator; its dict, or None."""
    if not run.ckpt.is_file():
        return None
    # weights_only: a checkpoint holds tensors and plain containers, never code.
    st = torch.load(run.ckpt, weights_only=True, map_location=map_location)
    net.load_state_dict(st["model"])
    opt.load_state_dict(st["optimizer"])
    sched.load_state_dict(st["scheduler"])
    run.gen.set_state(st["generator"].cpu())
    return st


def save(run: MemberRun, net, opt, sched, epoch: int, **extra) -> None:
    torch.save({"model": net.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(), "generator": run.gen.get_state(),
                "epoch": epoch, **extra}, run.ckpt)
