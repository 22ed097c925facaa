"""Subcommands of this stage (registered in uar_stream/cli.py): build-engine, bench-engines."""
from __future__ import annotations

import numpy as np

from uar_stream.cli.options import number


def register(sub) -> dict:
    """Add this module's subcommands to ``sub``; return {name: handler(args) -> exit code}."""
    p = sub.add_parser("build-engine", help="export the model to ONNX (and a TensorRT plan when "
                                            "TensorRT is installed); prints the paths")
    p.add_argument("--model", default="engines/default", help="model directory")
    p.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "int8"),
                   help="fp16: half-precision convs, fp32 input/outputs/uncertainties; int8: the "
                        "onnxruntime CPU engine, quantised on --calibration faces")
    p.add_argument("--calibration", metavar="NPZ",
                   help="int8: training faces to calibrate on (an .npz with 'images' uint8 [N,S,S], "
                        "e.g. FER+ train.npz; a fixed seeded sample of them is used)")
    p.add_argument("--max-batch", type=number(int, 1, 4096), default=64,
                   help="TensorRT profile's largest batch")
    p.add_argument("--force", action="store_true", help="rebuild even if cached files are valid")
    p.add_argument("--ship", action="store_true",
                   help="int8: write the file into the model directory as a shipped artifact "
                        "(engine_int8.onnx, recorded with its sha256 in manifest.json) instead of "
                        "the local cache, so installs without calibration faces run int8")
    b = sub.add_parser("bench-engines", help="faces/s and latency per backend and batch, "
                                             "fused vs looped ensemble members")
    add_bench_arguments(b)
    return {"build-engine": _cmd_build_engine, "bench-engines": _cmd_bench}


def add_bench_arguments(p) -> None:
    """Options of bench-engines (shared with tools/bench_engines.py)."""
    p.add_argument("--model", action="append", default=[],
                   help="model directory to time (repeatable; default: engines/default if present)")
    p.add_argument("--random-members", type=number(int, 0, 64), default=5,
                   help="also time a random-weight model with this many members and the shipped "
                        "architecture (0: no)")
    p.add_argument("--dinov2", type=number(int, 0, 64), default=0, metavar="M",
                   help="also time the DINOv2 configuration with M random-weight ViT-S/14 members "
                        "at batches 1 and 8 (needs the dinov2 extra; slow on CPU)")
    p.add_argument("--batches", default="1,8,32,64", help="comma-separated batch sizes")
    p.add_argument("--backends",
                   help="comma-separated subset of onnxruntime,torch-cpu,torch-cuda,tensorrt")
    p.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "bf16"),
                   help="GPU backends' precision (CPU backends run fp32)")
    p.add_argument("--threads", type=number(int, 0, 256), default=0,
                   help="CPU threads (0: backend default)")
    p.add_argument("--budget-s", type=number(float, 0.01, 3600.0), default=2.0,
                   help="seconds of timing per cell")
    p.add_argument("--no-looped", action="store_true", help="skip the looped-members variant")
    p.add_argument("--json", help="write the report as JSON here")


def _cmd_bench(a) -> int:
    from uar_stream.backends.bench import run_from_args

    return run_from_args(a)


def _cmd_build_engine(a) -> int:
    import torch

    from uar_stream.backends import tensorrt_backend
    from uar_stream.backends.export import ensure_onnx, load_graph, onnx_path
    from uar_stream.backends.onnxruntime_backend import OnnxRuntimeEngine
    from uar_stream.errors import ConfigError
    from uar_stream.model.locate import resolve_model_path

    if a.max_batch < 1:
        raise ConfigError(f"--max-batch: {a.max_batch} must be >= 1")
    if a.ship and a.precision != "int8":
        raise ConfigError(f"--ship: only int8 is shipped (--precision int8), not {a.precision}")
    model_dir = resolve_model_path(a.model)
    if a.precision == "int8":
        return _build_int8(model_dir, a)
    graph, man = load_graph(model_dir)
    if a.force:
        onnx_path(model_dir, a.precision).unlink(missing_ok=True)
    path = ensure_onnx(model_dir, a.precision, graph)
    # Check the file end to end: onnxruntime against torch on the same random faces.
    x = np.random.default_rng(0).standard_normal((8, 1, man.input_size, man.input_size),
                                                 dtype=np.float32)
    ort_out = OnnxRuntimeEngine(path, man.members, len(man.classes), man.input_size).infer(x)
    with torch.no_grad():
        ref = [t.numpy() for t in graph(torch.from_numpy(x))]
    diff = max(float(np.abs(o - r).max()) for o, r in
               zip((ort_out.mean_probs, ort_out.total, ort_out.aleatoric, ort_out.epistemic,
                    ort_out.member_probs), ref, strict=False))
    print(f"onnx:     {path} ({path.stat().st_size / 1e6:.1f} MB; onnxruntime vs torch "
          f"max |diff| {diff:.1e})")
    why = tensorrt_backend.unavailable_reason()
    if why:
        print(f"tensorrt: skipped ({why})")
        return 0
    plan = tensorrt_backend.plan_path(model_dir, a.precision, a.max_batch)
    if a.force:
        plan.unlink(missing_ok=True)
    plan = tensorrt_backend.ensure_plan(model_dir, a.precision, a.max_batch)
    print(f"tensorrt: {plan} ({plan.stat().st_size / 1e6:.1f} MB)")
    return 0


def _build_int8(model_dir, a) -> int:
    """build-engine --precision int8: quantise, then compare with fp32 on calibration faces."""
    from uar_stream.backends.export import ensure_onnx
    from uar_stream.backends.onnxruntime_backend import OnnxRuntimeEngine
    from uar_stream.backends.quantize import build_int8, calibration_sample
    from uar_stream.backends.shipped import ship_int8
    from uar_stream.errors import ConfigError
    from uar_stream.model.store import read_manifest

    if not a.calibration:
        raise ConfigError("--precision int8 needs --calibration <training faces .npz, e.g. FER+ train.npz>")
    build = ship_int8 if a.ship else build_int8
    path = build(model_dir, a.calibration, force=a.force)
    man = read_manifest(model_dir)
    faces = calibration_sample(a.calibration)[0][:64]
    args = (man.members, len(man.classes), man.input_size)
    q = OnnxRuntimeEngine(path, *args).infer(faces)
    ref = OnnxRuntimeEngine(ensure_onnx(model_dir, "fp32"), *args).infer(faces)
    diff = float(np.abs(q.mean_probs - ref.mean_probs).max())
    same = float((q.mean_probs.argmax(1) == ref.mean_probs.argmax(1)).mean())
    print(f"onnx:     {path} ({path.stat().st_size / 1e6:.1f} MB; int8 vs fp32 on {len(faces)} "
          f"calibration faces: max |probability diff| {diff:.3f}, same top class {same:.1%})")
    print("tensorrt: skipped (int8 is an onnxruntime CPU engine)")
    if a.ship:
        _note_shadowing_cache(model_dir, path)
    return 0


def _note_shadowing_cache(model_dir, shipped) -> None:
    """After --ship: say so when a locally built int8 file exists (engines run it first)."""
    from uar_stream.backends.shipped import find_int8

    found = find_int8(model_dir)
    if found.path is not None and found.path != shipped:
        print(f"note:     {found.path} (built locally) runs before the shipped file while it "
              "exists; delete it to run the shipped one")
