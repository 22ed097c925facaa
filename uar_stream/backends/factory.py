"""create_engine: pick and build a backend for a model directory.

``backend='auto'`` tries, in order: tensorrt (CUDA), torch-cuda, onnxruntime (CPU), torch-cpu,
and logs ONE line naming the choice and why each earlier candidate was skipped (INFO). An
explicit backend that cannot run raises a one-line ConfigError instead of falling back.
fp16/bf16 are GPU precisions: when auto lands on a CPU backend it runs fp32 and says so
(that line is a WARNING: the user does not get what they asked for). int8 is the reverse: an
onnxruntime CPU precision (a quantised file built by ``uar-stream build-engine --precision int8``),
so auto with int8 goes straight to onnxruntime, and torch / tensorrt / cuda refuse it.
``precision='auto'`` (the config default) is int8 where onnxruntime runs on the CPU and the model
has an int8 file, built locally or shipped in the model directory (``backends/shipped.py``;
1.7-1.9x faster, 99.4% of PublicTest faces on their fp32 route: docs/engines.md#precision),
else fp32; GPU backends run fp32.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from uar_stream.backends import onnxruntime_backend, tensorrt_backend
from uar_stream.backends.base import Engine
from uar_stream.backends.export import ensure_onnx, load_graph
from uar_stream.backends.flip_tta import FlipTTAEngine
from uar_stream.backends.shipped import Int8File, find_int8
from uar_stream.backends.torch_backend import TorchEngine, cuda_unavailable_reason
from uar_stream.errors import ConfigError, ModelError, UarError
from uar_stream.model.store import Manifest, read_manifest

log = logging.getLogger("uar_stream.engine")

BACKENDS = ("auto", "tensorrt", "torch", "onnxruntime")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "fp16", "bf16", "int8")
#: Why a backend other than onnxruntime on the CPU refuses int8 (one line).
INT8_ONLY = "int8 runs on backend onnxruntime, device cpu only (a quantised CPU graph)"


@dataclass
class _Request:
    model_dir: Path
    manifest: Manifest
    device: str
    precision: str
    max_batch: int
    threads: int


def _tensorrt(r: _Request) -> Engine:
    r = _gpu_precision(r)
    if r.precision == "int8":
        raise ConfigError(f"engine.precision: {INT8_ONLY}; engine.backend is tensorrt")
    if r.device == "cpu":
        raise ConfigError("engine.device: tensorrt runs on cuda only; use device auto or cuda")
    if why := tensorrt_backend.unavailable_reason():
        raise ConfigError(f"engine.backend: tensorrt cannot run here: {why}")
    m = r.manifest
    for attempt in (1, 2):
        plan = tensorrt_backend.ensure_plan(r.model_dir, r.precision, r.max_batch)
        try:
            return tensorrt_backend.TensorRTEngine(plan, m.members, len(m.classes), m.input_size,
                                                   r.max_batch, precision=r.precision)
        except ModelError as e:  # a corrupt or truncated cached plan: rebuild it once
            if attempt == 2:
                raise
            log.warning("engine: rebuilding %s: %s", plan, e)
            plan.unlink(missing_ok=True)
    raise AssertionError("unreachable")


def _torch(r: _Request, device: str) -> Engine:
    r = _gpu_precision(r)
    if r.precision == "int8":
        raise ConfigError(f"engine.precision: {INT8_ONLY}; engine.backend is torch")
    if device == "cuda" and (why := cuda_unavailable_reason()):
        raise ConfigError(f"engine.device: cuda is not usable by torch: {why}")
    graph, m = load_graph(r.model_dir)
    return TorchEngine(graph, m.members, len(m.classes), device, r.precision, r.max_batch,
                       r.threads, m.input_size)


def _onnxruntime(r: _Request) -> Engine:
    if why := onnxruntime_backend.unavailable_reason():
        raise ConfigError(f"engine.backend: onnxruntime cannot run here: {why}")
    if r.precision not in ("auto", "fp32", "fp16", "int8"):
        raise ConfigError(f"engine.precision: {r.precision!r} is not supported by onnxruntime; "
                          "allowed: fp32, fp16, int8")
    if r.precision == "int8" and r.device == "cuda":
        raise ConfigError(f"engine.precision: {INT8_ONLY}; engine.device is cuda")
    int8 = _cpu_int8(r)
    r = dataclasses.replace(r, precision="int8" if int8.path else "fp32") if r.precision == "auto" else r
    device = "cuda" if r.device == "cuda" else "cpu"
    path = int8.path or ensure_onnx(r.model_dir, r.precision)
    m = r.manifest
    eng = onnxruntime_backend.OnnxRuntimeEngine(path, m.members, len(m.classes), m.input_size,
                                                device, r.max_batch, r.threads)
    eng.source = int8.note
    return eng


def _gpu_precision(r: _Request) -> _Request:
    """precision auto on torch / tensorrt: fp32, as before int8 existed."""
    return dataclasses.replace(r, precision="fp32") if r.precision == "auto" else r


def _cpu_int8(r: _Request) -> Int8File:
    """The int8 file precision auto / int8 runs on the CPU (built locally, else shipped); none
    (path None) for other precisions, on cuda, or when neither is usable: auto then runs fp32
    and logs why (a WARNING when a shipped file is stale or missing), int8 stops with that line."""
    if r.precision not in ("auto", "int8") or r.device == "cuda":
        return Int8File(None)
    found = find_int8(r.model_dir)
    if found.path is None and r.precision == "int8":
        raise ConfigError(f"engine.precision: int8: {found.why}")
    if found.path is None:
        level = logging.WARNING if found.problem else logging.INFO
        log.log(level, "engine: precision auto runs fp32: %s", found.why)
    elif found.problem:  # a locally built file runs; the shipped one needs rebuilding
        log.warning("engine: int8 runs the locally built %s: %s", found.path, found.problem)
    return found


def _auto_candidates(r: _Request) -> list[tuple[str, Callable[[], Engine] | None, str]]:
    """(name, builder or None, why skipped) in preference order."""
    cpu_prec = "auto" if r.precision == "auto" else "fp32"  # fp16/bf16 are GPU precisions
    cpu_req = _Request(r.model_dir, r.manifest, "cpu", cpu_prec, r.max_batch, r.threads)
    out: list[tuple[str, Callable[[], Engine] | None, str]] = []
    gpu_why = "engine.device is cpu" if r.device == "cpu" else cuda_unavailable_reason()
    trt_why = tensorrt_backend.unavailable_reason() or gpu_why  # the reason names the missing package first
    if not trt_why and r.precision == "bf16":
        trt_why = "precision bf16 is not supported by tensorrt here (fp32, fp16)"
    out.append(("tensorrt", None if trt_why else (lambda: _tensorrt(r)), trt_why or ""))
    out.append(("torch-cuda", None if gpu_why else (lambda: _torch(r, "cuda")), gpu_why or ""))
    cpu_why = "engine.device is cuda" if r.device == "cuda" else None
    ort_why = cpu_why or onnxruntime_backend.unavailable_reason()
    out.append(("onnxruntime", None if ort_why else (lambda: _onnxruntime(cpu_req)), ort_why or ""))
    out.append(("torch-cpu", None if cpu_why else (lambda: _torch(cpu_req, "cpu")), cpu_why or ""))
    return out


def _auto(r: _Request) -> Engine:
    if r.precision == "int8":  # one backend runs it: no fallback that would hide a missing file
        eng = _onnxruntime(r)
        log.info("engine: backend auto chose %s (%s); int8 runs on onnxruntime only",
                 eng.name, _describe(eng))
        return eng
    skipped: list[str] = []
    for name, build, why in _auto_candidates(r):
        if build is None:
            skipped.append(f"{name} ({why})")
            continue
        try:
            eng = build()
        except ModelError as e:
            if name != "tensorrt":  # a broken model directory is no reason to try another backend
                raise
            skipped.append(f"{name} (failed: {str(e).splitlines()[0]})")  # e.g. an unparsable graph
            continue
        except (UarError, RuntimeError, OSError) as e:
            skipped.append(f"{name} (failed: {str(e).splitlines()[0] if str(e) else type(e).__name__})")
            continue
        detail = _describe(eng)
        level = logging.INFO  # nothing is wrong: the choice is shown under --verbose
        if r.precision not in ("fp32", "auto") and not name.endswith("cuda") and name != "tensorrt":
            detail += f"; precision {r.precision} is for GPU backends, running fp32"
            level = logging.WARNING  # the user asked for something they do not get
        log.log(level, "engine: backend auto chose %s (%s); skipped: %s", eng.name, detail,
                "; ".join(skipped) or "none")
        return eng
    raise ConfigError("engine.backend: auto found no usable backend: " + "; ".join(skipped))


def _describe(eng: Engine) -> str:
    parts = [f"max batch {getattr(eng, 'max_batch', '?')}"]
    if hasattr(eng, "threads"):
        parts.append(f"{eng.threads} threads")
    for attr in ("onnx_path", "plan_file", "source"):
        if getattr(eng, attr, None):
            parts.append(str(getattr(eng, attr)))
    return ", ".join(parts)


def create_engine(model_dir: str | Path, backend: str = "auto", device: str = "auto",
                  precision: str = "fp32", max_batch: int = 64, threads: int = 0,
                  flip_tta: bool = False) -> Engine:
    """Build the engine for a model directory (config keys engine.*); ``flip_tta`` wraps it in
    :class:`~uar_stream.backends.flip_tta.FlipTTAEngine` (each face averaged with its mirror)."""
    eng = _create(model_dir, backend, device, precision, max_batch, threads)
    if flip_tta:
        eng = FlipTTAEngine(eng)
        log.info("engine: flip test-time augmentation on (%s; two views per face)", eng.name)
    return eng


def _create(model_dir: str | Path, backend: str, device: str, precision: str, max_batch: int,
            threads: int) -> Engine:
    for key, value, allowed in (("backend", backend, BACKENDS), ("device", device, DEVICES),
                                ("precision", precision, PRECISIONS)):
        if value not in allowed:
            raise ConfigError(f"engine.{key}: {value!r} is not allowed; allowed: {', '.join(allowed)}")
    if max_batch < 1:
        raise ConfigError(f"engine.max_batch: {max_batch} must be >= 1")
    model_dir = Path(model_dir)
    r = _Request(model_dir, read_manifest(model_dir), device, precision, max_batch, threads)
    if backend == "auto":
        return _auto(r)
    if backend == "tensorrt":
        eng = _tensorrt(r)
    elif backend == "onnxruntime":
        eng = _onnxruntime(r)
    else:
        dev = device if device != "auto" else ("cpu" if cuda_unavailable_reason() else "cuda")
        eng = _torch(r, dev)
    log.info("engine: %s (%s)", eng.name, _describe(eng))
    return eng
