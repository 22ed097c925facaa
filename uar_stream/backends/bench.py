"""Engine benchmark: faces/s and latency per backend and batch, fused vs looped members.

Roofline: every row also gives the achieved GFLOP/s (FLOPs per face from torch's
``FlopCounterMode``); on CPU the report holds the machine's measured fp32 GEMM rate (a
1024^2 matmul, the better of torch and onnxruntime, same threads). Fusion can only remove
per-call overhead, so (GEMM rate / looped GFLOP/s) bounds the fused/looped ratio at a batch;
the speedup rows print that bound next to the measured ratio. It is a practical bound, not
a hard one: onnxruntime's blocked convolutions can run a few percent above its 1024^2 GEMM.

*fused*: the M members as ONE grouped-conv graph (what the engines run). *looped*: the same
weights split into M single-member graphs (``fused_cnn.split_members``) run one after
another on the same backend, their probabilities decomposed in numpy: what a plain
"list of models" ensemble costs. Both give identical outputs; only the time differs.

Models: model directories (``--model``), a random-weight M-member model with the shipped
architecture (``--random-members``), and DINOv2 when ``uar_stream.model.backbones.dinov2`` exists
(``--dinov2 M``; see :func:`dinov2_graph`). Used by ``uar-stream bench-engines`` and
``tools/bench_engines.py``.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from uar_stream.backends import onnxruntime_backend, tensorrt_backend
from uar_stream.backends.base import BatchedEngine, EnsembleOutput
from uar_stream.backends.export import export_onnx, load_graph
from uar_stream.backends.graph import UncertaintyGraph
from uar_stream.backends.torch_backend import TorchEngine, cuda_unavailable_reason
from uar_stream.model.fused_cnn import CnnArch, FusedCnn, split_members
from uar_stream.model.preprocess import INPUT_SIZE
from uar_stream.model.uncertainty import decompose

log = logging.getLogger("uar_stream.bench")

BATCHES = (1, 8, 32, 64)
BACKENDS = ("onnxruntime", "torch-cpu", "torch-cuda", "tensorrt")


@dataclass
class BenchModel:
    """A graph to benchmark; the looped variant needs ``graph.fused`` to be a FusedCnn."""

    name: str
    graph: UncertaintyGraph
    input_size: int
    num_classes: int
    batches: tuple[int, ...] | None = None  # None: the run's batches
    flops_per_face: float = 0.0  # filled by run_bench (flops_per_face())


@dataclass
class BenchRow:
    """One timing: a model on a backend, fused or looped, at one batch size."""

    model: str
    members: int
    backend: str
    mode: str  # fused | looped
    batch: int
    latency_ms_median: float
    latency_ms_p95: float
    faces_per_s: float
    iterations: int
    gflops_per_s: float = 0.0


class LoopedEngine(BatchedEngine):
    """M single-member engines run one after another; decomposition in numpy (float64)."""

    def __init__(self, members: list[BatchedEngine]):
        first = members[0]
        self.members_engines = members
        self.members, self.num_classes = len(members), first.num_classes
        self.max_batch, self.input_size = first.max_batch, first.input_size
        self.name = first.name + "-looped"

    def _infer(self, batch: np.ndarray) -> EnsembleOutput:
        p = np.concatenate([e._infer(batch).member_probs for e in self.members_engines], axis=1)
        d = decompose(p)
        return EnsembleOutput(d.mean_probs.astype(np.float32), d.total.astype(np.float32),
                              d.aleatoric.astype(np.float32), d.epistemic.astype(np.float32),
                              p.astype(np.float32))


def split_graph(graph: UncertaintyGraph) -> list[UncertaintyGraph]:
    """An M-member graph -> M single-member graphs with the same weights and temperature."""
    fused: FusedCnn = graph.fused
    temperature = 1.0 / float(graph.inv_temperature)
    out = []
    for state in split_members(fused.state_dict(), fused.members):
        single = FusedCnn(1, fused.num_classes, fused.arch)
        single.load_state_dict(state, strict=False)  # num_batches_tracked is not split
        out.append(UncertaintyGraph(single.eval(), temperature).eval())
    return out


# -- backends: graph -> engine --------------------------------------------------------------
Builder = Callable[[UncertaintyGraph, BenchModel, str], BatchedEngine]


def _onnxruntime(work: Path, threads: int, max_batch: int) -> Builder:
    def build(graph: UncertaintyGraph, m: BenchModel, tag: str) -> BatchedEngine:
        path = export_onnx(graph, work / f"{tag}.onnx", m.input_size)
        return onnxruntime_backend.OnnxRuntimeEngine(path, graph.members, m.num_classes,
                                                     m.input_size, "cpu", max_batch, threads)
    return build


def _torch(device: str, precision: str, max_batch: int, threads: int) -> Builder:
    def build(graph: UncertaintyGraph, m: BenchModel, tag: str) -> BatchedEngine:
        import copy

        return TorchEngine(copy.deepcopy(graph), graph.members, m.num_classes, device, precision,
                           max_batch, threads, m.input_size)
    return build


def _tensorrt(work: Path, precision: str, max_batch: int) -> Builder:
    def build(graph: UncertaintyGraph, m: BenchModel, tag: str) -> BatchedEngine:
        onnx_file = export_onnx(graph, work / f"{tag}-{precision}.onnx", m.input_size, precision)
        plan = tensorrt_backend.build_plan(onnx_file, work / f"{tag}-{precision}.plan",
                                           m.input_size, max_batch)
        return tensorrt_backend.TensorRTEngine(plan, graph.members, m.num_classes, m.input_size,
                                               max_batch, precision=precision)
    return build


def available_backends(work: Path, precision: str, max_batch: int, threads: int,
                       wanted: list[str] | None = None) -> tuple[dict[str, Builder], dict[str, str]]:
    """({backend name: builder}, {backend name: why skipped})."""
    builders: dict[str, Builder] = {}
    skipped: dict[str, str] = {}
    gpu_precision = precision if precision in ("fp32", "fp16") else "fp16"
    checks = {
        "onnxruntime": (onnxruntime_backend.unavailable_reason(),
                        lambda: _onnxruntime(work, threads, max_batch)),
        "torch-cpu": (None, lambda: _torch("cpu", "fp32", max_batch, threads)),
        "torch-cuda": (cuda_unavailable_reason(), lambda: _torch("cuda", precision, max_batch, threads)),
        "tensorrt": (tensorrt_backend.unavailable_reason(),
                     lambda: _tensorrt(work, gpu_precision, max_batch)),
    }
    for name, (why, make) in checks.items():
        if wanted and name not in wanted:
            continue
        if why:
            skipped[name] = why
        else:
            builders[name] = make()
    return builders, skipped


# -- models ---------------------------------------------------------------------------------
def model_from_dir(model_dir: str | Path) -> BenchModel:
    """A model directory's graph (weights and temperature as shipped), named by the directory."""
    graph, man = load_graph(model_dir)
    return BenchModel(f"{Path(model_dir).name} (M={man.members})", graph, man.input_size,
                      len(man.classes))


_SHIPPED_ARCH = CnnArch()  # frozen: safe to share as a default


def random_model(members: int, arch: CnnArch = _SHIPPED_ARCH, seed: int = 0) -> BenchModel:
    """Random weights, shipped architecture: timing does not depend on the weights."""
    torch.manual_seed(seed)
    fused = FusedCnn(members, 8, arch).eval()
    return BenchModel(f"random cnn (M={members})", UncertaintyGraph(fused, 1.0).eval(),
                      INPUT_SIZE, 8)


def dinov2_graph(members: int, batches: tuple[int, ...] = (1, 8)) -> tuple[BenchModel | None, str]:
    """The DINOv2 configuration (M ViT-S/14 at 224, ``uar_stream.model.backbones.dinov2``) with
    random weights, or (None, why not). Its members are separate ViTs run in turn inside
    the module, so there is no fused/looped contrast to time; ``batches`` are kept small
    because one ViT-S/14 forward costs ~126 ms on CPU (STACK.md)."""
    try:
        from uar_stream.model.backbones.dinov2 import DinoV2Ensemble
    except ImportError as e:
        return None, f"uar_stream.model.backbones.dinov2 is not available ({e})"
    try:
        torch.manual_seed(0)
        net = DinoV2Ensemble(members).eval()
    except Exception as e:  # noqa: BLE001 - e.g. transformers missing (ModelError)
        return None, str(e).splitlines()[0]
    return (BenchModel(f"dinov2 vit-s/14 random (M={members})", UncertaintyGraph(net, 1.0).eval(),
                       INPUT_SIZE, net.num_classes, batches), "")


# -- roofline -------------------------------------------------------------------------------
def flops_per_face(m: BenchModel) -> float:
    """FLOPs of one face through the whole graph (convs, matmuls, attention), batch 1."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, 1, m.input_size, m.input_size)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        m.graph(x)
    return float(counter.get_total_flops())


def cpu_gemm_gflops(threads: int, n: int = 1024, reps: int = 20) -> float:
    """fp32 GFLOP/s of an n x n matmul on the CPU with ``threads`` threads, the better of
    torch and onnxruntime (their GEMM kernels differ): the practical peak that a
    convolution (im2col + GEMM) can approach on this machine. Median of ``reps`` calls."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    threads = threads or onnxruntime_backend.default_threads()
    a, b = np.random.default_rng(0).standard_normal((2, n, n)).astype(np.float32)

    def rate(call) -> float:
        for _ in range(3):
            call()
        ts = []
        for _ in range(reps):
            t = time.perf_counter()
            call()
            ts.append(time.perf_counter() - t)
        return 2 * n ** 3 / statistics.median(ts) / 1e9

    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        best = rate(lambda: ta @ tb)
    finally:
        torch.set_num_threads(old)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])], "gemm",
        [helper.make_tensor_value_info(k, TensorProto.FLOAT, [n, n]) for k in "ab"],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])])
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    sess = ort.InferenceSession(helper.make_model(graph).SerializeToString(), so,
                                providers=["CPUExecutionProvider"])
    return max(best, rate(lambda: sess.run(None, {"a": a, "b": b})))


# -- timing ---------------------------------------------------------------------------------
def time_engines(engines: dict[str, BatchedEngine], x: np.ndarray, budget_s: float,
                 warmup: int = 2, min_iters: int = 5, max_iters: int = 300) -> dict[str, list[float]]:
    """Per-call latencies in ms for each engine on the same input, the engines taking turns
    call by call, so that load from other processes hits them alike and their ratio stays
    fair on a busy machine. Runs until ``budget_s`` per engine is spent (at least
    ``min_iters`` and at most ``max_iters`` calls each), after ``warmup`` untimed calls."""
    for eng in engines.values():
        for _ in range(warmup):
            eng.infer(x)
    times: dict[str, list[float]] = {k: [] for k in engines}
    start = time.perf_counter()
    budget = budget_s * len(engines)
    while True:
        n = min(len(v) for v in times.values())
        if n >= max_iters or (n >= min_iters and time.perf_counter() - start >= budget):
            return times
        for k, eng in engines.items():
            t = time.perf_counter()
            eng.infer(x)
            times[k].append((time.perf_counter() - t) * 1e3)


def _row(m: BenchModel, backend: str, mode: str, batch: int, times: list[float]) -> BenchRow:
    med = statistics.median(times)
    p95 = float(np.percentile(times, 95))
    return BenchRow(m.name, m.graph.members, backend, mode, batch, round(med, 3), round(p95, 3),
                    round(batch / med * 1e3, 1), len(times),
                    round(m.flops_per_face * batch / med / 1e6, 2))


def run_bench(models: list[BenchModel], batches: tuple[int, ...] = BATCHES,
              backends: list[str] | None = None, precision: str = "fp32", threads: int = 0,
              budget_s: float = 2.0, looped: bool = True, work_dir: Path | None = None,
              seed: int = 0) -> dict:
    """Time every (model, backend, fused|looped, batch); returns the JSON-able report."""
    max_batch = max(batches)
    rng = np.random.default_rng(seed)
    rows: list[BenchRow] = []
    with tempfile.TemporaryDirectory(prefix="uar-bench-") as tmp:
        work = Path(work_dir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        builders, skipped = available_backends(work, precision, max_batch, threads, backends)
        cpu = any(b in CPU_BACKENDS for b in builders)
        # Measured before and after the timings (the better one): load from other processes
        # can only lower it, and a low peak would understate the bound.
        gemm = [cpu_gemm_gflops(threads)] if cpu else []
        for mi, m in enumerate(models):
            m.flops_per_face = m.flops_per_face or flops_per_face(m)
            m_batches = tuple(b for b in (m.batches or batches) if b <= max_batch)
            x_all = rng.standard_normal((max_batch, 1, m.input_size, m.input_size)).astype(np.float32)
            can_loop = looped and isinstance(m.graph.fused, FusedCnn) and m.graph.members > 1
            for bname, build in builders.items():
                engines = _build_engines(bname, build, m, f"m{mi}", can_loop, skipped)
                if not engines:
                    continue
                for b in m_batches:
                    times = time_engines(engines, x_all[:b], budget_s, min_iters=3 if m.batches else 5)
                    for mode, t in times.items():
                        label = engines[mode].name if mode == "fused" else bname
                        rows.append(_row(m, label, mode, b, t))
                        log.info("%s %s %s batch %d: %.2f ms", m.name, bname, mode, b,
                                 rows[-1].latency_ms_median)
                del engines
    env = environment(threads)
    if gemm:
        env["cpu_gemm_gflops"] = round(max(gemm + [cpu_gemm_gflops(threads)]), 1)
    return {"environment": env, "batches": list(batches),
            "models": {m.name: {"mflops_per_face": round(m.flops_per_face / 1e6, 2)} for m in models},
            "rows": [asdict(r) for r in rows],
            "fused_speedup": speedups(rows, env.get("cpu_gemm_gflops")), "skipped": skipped}


def _build_engines(bname: str, build: Builder, m: BenchModel, tag: str, can_loop: bool,
                   skipped: dict[str, str]) -> dict[str, BatchedEngine]:
    """{mode: engine} for ``m`` on backend ``bname``: fused, then looped if ``can_loop``;
    a mode whose build fails is left out and its error recorded in ``skipped``."""
    makers = {"fused": lambda: build(m.graph, m, f"{tag}-fused")}
    if can_loop:
        makers["looped"] = lambda: LoopedEngine(
            [build(g, m, f"{tag}-member{k}") for k, g in enumerate(split_graph(m.graph))])
    engines: dict[str, BatchedEngine] = {}
    for mode, make in makers.items():
        try:
            engines[mode] = make()
        except Exception as e:  # noqa: BLE001 - report and go on with the rest
            skipped[f"{bname} {mode} {m.name}"] = str(e).splitlines()[0]
    return engines


CPU_BACKENDS = ("onnxruntime", "torch-cpu")


def speedups(rows: list[BenchRow], cpu_gemm_gflops: float | None = None) -> list[dict]:
    """looped median latency / fused median latency per (model, backend family, batch); on
    CPU also the bound fusion cannot beat: the GEMM rate over the looped GFLOP/s."""
    fused = {(r.model, _family(r.backend), r.batch): r for r in rows if r.mode == "fused"}
    out = []
    for r in rows:
        if r.mode == "looped" and (r.model, _family(r.backend), r.batch) in fused:
            f = fused[(r.model, _family(r.backend), r.batch)]
            row = {"model": r.model, "backend": f.backend, "batch": r.batch,
                   "fused_over_looped": round(r.latency_ms_median / f.latency_ms_median, 2)}
            if cpu_gemm_gflops and _family(r.backend) in CPU_BACKENDS and r.gflops_per_s > 0:
                row["looped_gemm_fraction"] = round(r.gflops_per_s / cpu_gemm_gflops, 3)
                row["fused_gemm_fraction"] = round(f.gflops_per_s / cpu_gemm_gflops, 3)
                row["bound_fused_over_looped"] = round(cpu_gemm_gflops / r.gflops_per_s, 2)
            out.append(row)
    return out


def _family(backend: str) -> str:
    for fam in BACKENDS:
        if backend.startswith(fam):
            return fam
    return backend


def environment(threads: int) -> dict:
    """Where the timings ran: versions, CPU, cores, load, thread counts and the GPU if any."""
    import onnxruntime

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    env = {"python": platform.python_version(), "torch": torch.__version__,
           "onnxruntime": onnxruntime.__version__, "cpu": platform.processor() or platform.machine(),
           "cores": cores, "load_avg_1min": round(os.getloadavg()[0], 2),
           "onnxruntime_threads": threads or onnxruntime_backend.default_threads(),
           "torch_threads": threads or torch.get_num_threads()}
    if not cuda_unavailable_reason():
        env["gpu"] = torch.cuda.get_device_name(0)
    return env


def format_table(report: dict) -> str:
    """The report as a plain-text table (one line per row) plus the speedups."""
    lines = [f"{'model':<30} {'backend':<26} {'mode':<7} {'batch':>5} {'median ms':>10} "
             f"{'p95 ms':>9} {'faces/s':>9} {'GFLOP/s':>8}"]
    for r in report["rows"]:
        lines.append(f"{r['model']:<30} {r['backend']:<26} {r['mode']:<7} {r['batch']:>5} "
                     f"{r['latency_ms_median']:>10.2f} {r['latency_ms_p95']:>9.2f} {r['faces_per_s']:>9.1f} "
                     f"{r.get('gflops_per_s', 0):>8.1f}")
    if report["fused_speedup"]:
        lines.append("")
        lines.append("fused vs looped (looped latency / fused latency); bound = GEMM rate / looped GFLOP/s:")
        for s in report["fused_speedup"]:
            bound = (f"  (bound {s['bound_fused_over_looped']:.2f}x; looped at "
                     f"{100 * s['looped_gemm_fraction']:.0f}% of GEMM rate, fused at "
                     f"{100 * s['fused_gemm_fraction']:.0f}%)") if "bound_fused_over_looped" in s else ""
            lines.append(f"  {s['model']:<30} {s['backend']:<26} batch {s['batch']:>3}: "
                         f"{s['fused_over_looped']:.2f}x{bound}")
    for k, why in report["skipped"].items():
        lines.append(f"skipped {k}: {why}")
    env = report["environment"]
    gemm = f", fp32 GEMM {env['cpu_gemm_gflops']:.0f} GFLOP/s" if "cpu_gemm_gflops" in env else ""
    lines.append(f"({env['cores']} cores{gemm}, load {env['load_avg_1min']}, torch {env['torch']}, "
                 f"onnxruntime {env['onnxruntime']}, {env.get('gpu', 'no GPU')})")
    return "\n".join(lines)


# -- command line -----------------------------------------------------------------------------
def _default_model_dirs() -> list[Path]:
    """The shipped model when one is installed or checked out, else none (random members only)."""
    from uar_stream.errors import ModelError
    from uar_stream.model.locate import DEFAULT_MODEL, resolve_model_path

    try:
        d = resolve_model_path(DEFAULT_MODEL)
    except ModelError:
        return []
    return [d] if (d / "manifest.json").is_file() else []


def run_from_args(a: argparse.Namespace) -> int:
    """``uar-stream bench-engines``: time the models ``a`` names, print the table and, with
    ``--json``, write the report; 0 on success (bad options raise ConfigError)."""
    from uar_stream.errors import ConfigError
    from uar_stream.model.locate import resolve_model_path

    try:
        batches = tuple(int(b) for b in a.batches.split(",") if b.strip())
    except ValueError:
        raise ConfigError(f"--batches: {a.batches!r} is not a comma-separated list of integers") from None
    if not batches or min(batches) < 1:
        raise ConfigError(f"--batches: {a.batches!r} must list batch sizes >= 1")
    dirs = [resolve_model_path(d) for d in a.model] or _default_model_dirs()
    models = [model_from_dir(d) for d in dirs]
    if a.random_members > 0:
        models.append(random_model(a.random_members))
    extra_skipped = {}
    if a.dinov2 > 0:
        m, why = dinov2_graph(a.dinov2)
        if m is None:
            extra_skipped["dinov2"] = why
        else:
            models.append(m)
    if not models:
        raise ConfigError("bench-engines: nothing to time: give --model DIR or --random-members N")
    backends = [b.strip() for b in a.backends.split(",")] if a.backends else None
    unknown = sorted(set(backends or ()) - set(BACKENDS))
    if unknown:
        raise ConfigError(f"--backends: {unknown[0]!r} is not allowed; allowed: {', '.join(BACKENDS)}")
    report = run_bench(models, batches, backends, a.precision, a.threads, a.budget_s,
                       not a.no_looped)
    report["skipped"].update(extra_skipped)
    print(format_table(report))
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=2))
        print(f"wrote {a.json}")
    return 0
