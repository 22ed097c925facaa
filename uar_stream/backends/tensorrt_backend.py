"""TensorRT 10 backend: ONNX -> strongly typed network -> serialized plan (cached) -> execute.

Written against the documented TensorRT 10 Python API and NOT run on the machines this
project is developed on (TensorRT cannot be installed there); its tests skip without it.

- Build: ``OnnxParser`` fills a network created with ``STRONGLY_TYPED`` (weakly typed
  builds and the FP16 builder flag are deprecated since TensorRT 10.12), so precision comes
  from the ONNX file: the fp16 export has fp16 convs and an fp32 input, outputs and
  uncertainty math. One optimisation profile on ``faces``: min 1, opt 16, max ``max_batch``.
- Cache: ``<model_dir>/cache/<key>-<precision>-trt<version>-<gpu>-b<max>.plan``; a new
  model, TensorRT version, GPU or max batch gives a new name, so a plan is never reused
  where it is invalid (plans are not portable across TensorRT versions or GPU models).
- Run: buffers for ``max_batch`` rows are allocated once as torch CUDA tensors and bound
  with ``set_tensor_address``; each call sets the input shape and runs ``execute_async_v3``
  on the engine's own stream, with pinned host buffers for the copies.
"""
from __future__ import annotations

import logging
import os
import re
import tempfile
from pathlib import Path

import numpy as np

from uar_stream.backends.base import BatchedEngine, EnsembleOutput
from uar_stream.backends.export import artifact_key, cache_dir, ensure_onnx, publish
from uar_stream.backends.graph import DENSITY_OUTPUT, INPUT_NAME, output_names
from uar_stream.errors import ConfigError, ModelError

log = logging.getLogger("uar_stream.engine")

PRECISIONS = ("fp32", "fp16")
OPT_BATCH = 16
WORKSPACE_BYTES = 1 << 30


def _import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError as e:
        raise ConfigError("engine.backend: tensorrt is not installed (pip install "
                          f"'uar-stream[gpu]' on a machine with an NVIDIA GPU; {e})") from None
    if int(trt.__version__.split(".")[0]) < 10:
        raise ConfigError(f"engine.backend: tensorrt {trt.__version__} is too old; need 10.x")
    return trt


def unavailable_reason() -> str | None:
    """None if TensorRT and a CUDA GPU are usable, else why not (without importing TensorRT
    when it is absent)."""
    import importlib.util

    if importlib.util.find_spec("tensorrt") is None:
        return "tensorrt is not installed (the 'gpu' extra)"
    from uar_stream.backends.torch_backend import cuda_unavailable_reason

    return cuda_unavailable_reason()


def _gpu_slug(device_index: int) -> str:
    import torch

    name = torch.cuda.get_device_name(device_index)
    major, minor = torch.cuda.get_device_capability(device_index)
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_") + f"_sm{major}{minor}"


def plan_path(model_dir: str | Path, precision: str, max_batch: int, device_index: int = 0) -> Path:
    """Where the plan for this model / precision / TensorRT version / GPU / max batch lives."""
    trt = _import_tensorrt()
    key = artifact_key(model_dir)
    name = f"{key}-{precision}-trt{trt.__version__}-{_gpu_slug(device_index)}-b{max_batch}.plan"
    return cache_dir(model_dir, "cache", key) / name


def build_plan(onnx_file: str | Path, plan_file: str | Path, input_size: int, max_batch: int) -> Path:
    """Parse ``onnx_file``, build a strongly typed engine for batches 1..max_batch, and write
    the serialized plan to ``plan_file`` (atomically)."""
    trt = _import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_file)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelError(f"{onnx_file}: TensorRT cannot parse it ({errors})")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    profile = builder.create_optimization_profile()
    shape = (1, input_size, input_size)
    profile.set_shape(INPUT_NAME, (1, *shape), (min(OPT_BATCH, max_batch), *shape),
                      (max_batch, *shape))
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise ModelError(f"{onnx_file}: TensorRT could not build an engine (see its log above)")
    plan_file = Path(plan_file)
    fd, tmp = tempfile.mkstemp(prefix=f".{plan_file.stem}.", suffix=".tmp", dir=plan_file.parent)
    with os.fdopen(fd, "wb") as f:
        f.write(memoryview(plan))
    publish(Path(tmp), plan_file)
    log.info("engine: wrote TensorRT plan %s", plan_file)
    return plan_file


def ensure_plan(model_dir: str | Path, precision: str = "fp32", max_batch: int = 64,
                device_index: int = 0) -> Path:
    """The cached plan for this model and machine, built (from the ONNX export) if missing."""
    if precision not in PRECISIONS:
        raise ConfigError(f"engine.precision: {precision!r} is not supported by tensorrt; "
                          f"allowed: {', '.join(PRECISIONS)}")
    from uar_stream.model.store import read_manifest

    path = plan_path(model_dir, precision, max_batch, device_index)
    if path.is_file() and path.stat().st_size > 0:
        return path
    onnx_file = ensure_onnx(model_dir, precision)
    _remove_stale(path)
    return build_plan(onnx_file, path, read_manifest(model_dir).input_size, max_batch)


def _remove_stale(path: Path) -> None:
    """Delete plans of older versions of this model (plans for other GPUs or TensorRT
    versions are kept: a shared model directory may serve several machines)."""
    key = path.name.split("-")[0]
    for f in path.parent.glob("*.plan"):
        if not f.name.startswith(key + "-"):
            log.info("engine: removing stale %s", f)
            f.unlink(missing_ok=True)


class TensorRTEngine(BatchedEngine):
    """Runs a serialized TensorRT plan; see the module docstring for how."""

    def __init__(self, plan_file: str | Path, members: int, num_classes: int, input_size: int,
                 max_batch: int = 64, device_index: int = 0, precision: str = "fp32"):
        trt = _import_tensorrt()
        import torch

        self.members, self.num_classes = members, num_classes
        self.input_size, self.max_batch = input_size, max_batch
        self.device = torch.device("cuda", device_index)
        self.plan_file = Path(plan_file)
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(self.plan_file.read_bytes())
        if self.engine is None:
            raise ModelError(f"{self.plan_file}: TensorRT cannot deserialize it (corrupt, or built "
                             "by another TensorRT version); delete it to rebuild")
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream(self.device)
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        # A model with a density file has one more output (the plan says which it was built from).
        self.output_names = output_names(DENSITY_OUTPUT in names)
        if sorted(names) != sorted((INPUT_NAME, *self.output_names)):
            raise ModelError(f"{self.plan_file}: tensors {names} are not the uncertainty graph's")
        shapes = {INPUT_NAME: (max_batch, 1, input_size, input_size),
                  "mean_probs": (max_batch, num_classes), "total": (max_batch,),
                  "aleatoric": (max_batch,), "epistemic": (max_batch,),
                  "member_probs": (max_batch, members, num_classes), DENSITY_OUTPUT: (max_batch,)}
        self._device_buf: dict[str, torch.Tensor] = {}
        self._host_buf: dict[str, torch.Tensor] = {}
        for name in names:
            dtype = _torch_dtype(trt, self.engine.get_tensor_dtype(name))
            self._device_buf[name] = torch.empty(shapes[name], dtype=dtype, device=self.device)
            self._host_buf[name] = torch.empty(shapes[name], dtype=dtype, pin_memory=True)
            # Addresses stay valid for the engine's lifetime: bind once.
            self.context.set_tensor_address(name, self._device_buf[name].data_ptr())
        self.name = f"tensorrt-{precision}"

    def _infer(self, batch: np.ndarray) -> EnsembleOutput:
        import torch

        n = len(batch)
        host_in = self._host_buf[INPUT_NAME]
        host_in[:n].copy_(torch.from_numpy(batch))
        with torch.cuda.device(self.device), torch.cuda.stream(self.stream):
            self._device_buf[INPUT_NAME][:n].copy_(host_in[:n], non_blocking=True)
            self.context.set_input_shape(INPUT_NAME, (n, 1, self.input_size, self.input_size))
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise ModelError(f"{self.plan_file}: TensorRT execution failed")
            # Rows are the leading dimension, so the first n rows are a contiguous prefix.
            for name in self.output_names:
                self._host_buf[name][:n].copy_(self._device_buf[name][:n], non_blocking=True)
        self.stream.synchronize()
        return EnsembleOutput(**{name: self._host_buf[name][:n].float().numpy().copy()
                                 for name in self.output_names})


def _torch_dtype(trt, dt):
    import torch

    table = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16,
             trt.DataType.INT32: torch.int32}
    if dt not in table:
        raise ModelError(f"TensorRT tensor type {dt} is not expected in the uncertainty graph")
    return table[dt]
