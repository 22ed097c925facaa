"""Per-member training state shared by both trainers: the member's work directory, its
seeding, and the checkpoint written every epoch (resumed from on a rerun).

Checkpoints are safetensors, never pickle (project rule): the nested model / optimizer /
scheduler / generator state is flattened into named tensors plus a JSON skeleton kept in the
file's metadata (:func:`pack` / :func:`unpack`). Every file is written to a temporary name and
renamed into place, so a reader (the commit watcher, a copy taken at the end of a session)
never sees half a checkpoint.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, safe_open, save_file

log = logging.getLogger("uar_stream.train")

CHECKPOINT = "checkpoint.safetensors"
_TENSOR = "__tensor__"


@dataclass
class MemberRun:
    """One member being trained: its index, work directory, weights and checkpoint paths, generator."""
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
    run = MemberRun(m, mdir, final, mdir / CHECKPOINT, torch.Generator())
    if final.is_file():
        log.info("member %d: already trained (%s), skipping", m, final)
        return run, load_file(str(final))
    torch.manual_seed(seed * 1000 + m)
    run.gen.manual_seed(seed * 1000 + m)
    return run, None


def pack(obj, prefix: str = "", tensors: dict | None = None):
    """Nested dicts/lists/scalars with tensor leaves -> (JSON-able skeleton, {name: tensor}).

    Each tensor is replaced by ``{"__tensor__": name}``; dict keys become strings (optimizer
    state is keyed by int: :func:`unpack` restores int keys that were ints)."""
    tensors = {} if tensors is None else tensors
    if isinstance(obj, torch.Tensor):
        name = prefix or "t"
        tensors[name] = obj.detach().cpu().contiguous()
        return {_TENSOR: name}, tensors
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            key = f"i:{k}" if isinstance(k, int) else str(k)
            out[key] = pack(v, f"{prefix}.{key}" if prefix else key, tensors)[0]
        return out, tensors
    if isinstance(obj, (list, tuple)):
        return [pack(v, f"{prefix}.{i}", tensors)[0] for i, v in enumerate(obj)], tensors
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj, tensors
    raise TypeError(f"checkpoint: cannot store {type(obj).__name__} at {prefix!r}")


def unpack(skel, tensors: dict):
    """Inverse of :func:`pack`."""
    if isinstance(skel, dict):
        if set(skel) == {_TENSOR}:
            return tensors[skel[_TENSOR]]
        return {(int(k[2:]) if k.startswith("i:") else k): unpack(v, tensors) for k, v in skel.items()}
    if isinstance(skel, list):
        return [unpack(v, tensors) for v in skel]
    return skel


def write_state(path: Path, state: dict) -> None:
    """Write a nested state dict as one safetensors file, atomically."""
    skel, tensors = pack(state)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={"skeleton": json.dumps(skel)})
    os.replace(tmp, path)


def read_state(path: Path, map_location=None) -> dict:
    """Read a file written by :func:`write_state`."""
    with safe_open(str(path), framework="pt", device="cpu") as f:
        skel = json.loads(f.metadata()["skeleton"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    if map_location is not None:
        tensors = {k: v.to(map_location) for k, v in tensors.items()}
    return unpack(skel, tensors)


def resume(run: MemberRun, net, opt, sched, map_location=None, ema=None) -> dict | None:
    """Load the member's checkpoint into net/opt/sched/generators (and ``ema``, a module, when
    the checkpoint holds one); its dict, or None."""
    if not run.ckpt.is_file():
        return None
    st = read_state(run.ckpt, map_location)
    net.load_state_dict(st["model"])
    opt.load_state_dict(st["optimizer"])
    sched.load_state_dict(st["scheduler"])
    run.gen.set_state(st["generator"].cpu())
    if st.get("torch_rng") is not None:  # dropout draws from torch's global generator
        torch.set_rng_state(st["torch_rng"].cpu())
    if ema is not None and st.get("ema") is not None:
        ema.load_state_dict(st["ema"])
    return st


def save(run: MemberRun, net, opt, sched, epoch: int, ema=None, **extra) -> None:
    """Checkpoint after ``epoch`` (atomically; ``extra``: JSON-able scalars or tensors)."""
    write_state(run.ckpt, {"model": net.state_dict(), "optimizer": opt.state_dict(),
                           "scheduler": sched.state_dict(), "generator": run.gen.get_state(),
                           "torch_rng": torch.get_rng_state(),
                           "ema": ema.state_dict() if ema is not None else None,
                           "epoch": epoch, **extra})
