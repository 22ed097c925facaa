"""onnxruntime backend: the CPU default.

Session settings, and why: graph optimisation ALL (fuses Conv+Add+Relu, which the grouped
convs are made of); sequential execution (the graph is one chain: parallel execution only
adds scheduling); one inter-op thread; intra-op threads from ``engine.threads`` (0 = the
cores this process may use, at most 4); and no spin-waiting between ops: the engine shares
the CPU with capture and face detection, and on a busy 2-core machine spinning made a
batch-1 call with 2 threads 1.7x slower (24.8 vs 14.7 ms, 5 members), while it bought no
measurable speed there.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from uar_stream.backends.base import BatchedEngine, EnsembleOutput
from uar_stream.backends.graph import INPUT_NAME
from uar_stream.errors import ConfigError, ModelError

log = logging.getLogger("uar_stream.engine")


def default_threads() -> int:
    """Intra-op threads when ``engine.threads`` is 0: usable cores, capped at 4."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 4))


def unavailable_reason() -> str | None:
    """None if onnxruntime can be imported, else why not."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError as e:
        return f"onnxruntime is not installed ({e})"
    return None


class OnnxRuntimeEngine(BatchedEngine):
    """Runs an exported uncertainty graph (``export.ensure_onnx``) with onnxruntime."""

    def __init__(self, onnx_path: str | Path, members: int, num_classes: int, input_size: int,
                 device: str = "cpu", max_batch: int = 64, threads: int = 0):
        import onnxruntime as ort

        self.onnx_path = Path(onnx_path)
        self.members, self.num_classes, self.max_batch = members, num_classes, max_batch
        self.input_size = input_size
        self.threads = threads if threads > 0 else default_threads()
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.log_severity_level = 3  # errors only: its warnings are about unused initializers
        if device == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise ConfigError("engine.device: cuda needs onnxruntime-gpu (CUDAExecutionProvider "
                                  "is not available); use device cpu, or backend torch/tensorrt")
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        else:
            providers = ["CPUExecutionProvider"]
        try:
            self.session = ort.InferenceSession(str(self.onnx_path), so, providers=providers)
        except Exception as e:  # noqa: BLE001 - ort raises its own exception types
            raise ModelError(f"{self.onnx_path}: onnxruntime cannot load it "
                             f"({str(e).splitlines()[0]}); delete it to rebuild") from None
        # The file says which outputs it has (a model with a density file adds ``density``).
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.device = device
        self.name = "onnxruntime" + ("-cuda" if device == "cuda" else "")
        #: Where the file comes from, for the engine's log line (e.g. "int8 shipped with the model").
        self.source = ""

    def _infer(self, batch: np.ndarray) -> EnsembleOutput:
        outs = self.session.run(self.output_names, {INPUT_NAME: batch})
        return EnsembleOutput(**dict(zip(self.output_names, outs, strict=True)))
