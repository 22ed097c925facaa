"""Export the uncertainty graph to ONNX: one self-contained file per model and precision.

Files live in ``<model_dir>/onnx/<key>-<precision>.onnx`` (gitignored cache). ``key`` is
:func:`uar_stream.model.store.model_id`, so retrained weights get a new file; files of other
keys are deleted when a new one is written. A file is reused only if it loads, passes
``onnx.checker`` and carries the metadata this code writes (model key, graph version,
precision); anything else (truncated, corrupt, older graph) is rebuilt, with a warning.

Exporter: torch's TorchScript-based exporter (``dynamo=False``). On torch 2.13 it needs no
extra package, exports the grouped-conv ensemble in ~1.5 s (the dynamo exporter needs
``onnxscript`` + ``onnx-ir`` and took ~10 s), folds BatchNorm into the convs, and its output
matches torch to 4e-7 with a dynamic batch axis; onnxruntime runs both files equally fast.
"""
from __future__ import annotations

import copy
import logging
import os
import re
import tempfile
import time
import warnings
from pathlib import Path

import torch

from uar_stream.backends.graph import INPUT_NAME, UncertaintyGraph, output_names
from uar_stream.errors import ConfigError, ModelError
from uar_stream.model.density import load_density
from uar_stream.model.ensemble import load_ensemble
from uar_stream.model.store import Manifest, density_path, model_id, read_manifest

log = logging.getLogger("uar_stream.engine")

#: Precisions an ONNX file can be written in. fp16: member weights and convs in fp16,
#: input, outputs and the uncertainty math in fp32 (what a strongly typed TensorRT build runs).
EXPORTED = ("fp32", "fp16")
#: Every precision a cached ONNX file can have: int8 is quantised from the fp32 file on
#: calibration faces (:mod:`uar_stream.backends.quantize`), not exported by torch.
PRECISIONS = (*EXPORTED, "int8")
#: How to build the int8 file (printed when it is missing).
INT8_HINT = ("uar-stream build-engine --model {model} --precision int8 "
             "--calibration <training faces .npz, e.g. FER+ train.npz>")
#: ONNX opset: 17 is well covered by onnxruntime >= 1.14 and TensorRT 10's parser.
OPSET = 17
#: Bump when the exported graph changes (graph.py's math, fused_cnn's layers): cached files
#: of an older graph are then rebuilt.
GRAPH_VERSION = "3"  # 3: decomposition temperature, density output
#: How int8 files are quantised, recorded in each file (and the shipped entry): a file with
#: another scheme is rebuilt (cache) or stale (shipped). "u8s8-w7": uint8 activations, int8
#: weights in 7 bits (reduce_range). With full 8-bit weights, x86 CPUs without VNNI (AVX2,
#: AVX-512 without VNNI) add u8*s8 products in pairs into int16 (vpmaddubsw), which saturates:
#: 19% of the first conv's outputs on PublicTest faces, mean probabilities off by 0.48 against
#: fp32 (CI, on such a CPU). 7-bit weights keep every pair below 2^15 (255*64*2 < 32768).
INT8_SCHEME = "u8s8-w7"
_META_PREFIX = "uar_stream."
# 12 hex digits or more: files of the shorter keys earlier versions used are stale too
_ARTIFACT_RE = re.compile(r"^[0-9a-f]{12,}-(fp32|fp16|int8)\.onnx$")


def load_graph(model_dir: str | Path) -> tuple[UncertaintyGraph, Manifest]:
    """Model directory -> (the eval-mode fp32 uncertainty graph, its manifest); any backbone
    :func:`uar_stream.model.ensemble.load_ensemble` knows (the fused CNN, DINOv2)."""
    fused, man = load_ensemble(model_dir)
    dens_file = density_path(model_dir, man)
    density = None if dens_file is None else load_density(dens_file, man.members, len(man.classes))
    graph = UncertaintyGraph(fused, man.temperature, man.uncertainty_temperature, density)
    return graph.eval(), man


def artifact_key(model_dir: str | Path) -> str:
    """The key naming built artifacts: the model id (:func:`uar_stream.model.store.model_id`),
    which hashes the manifest and every weight file as it is on disk, so changed weights never
    reuse a stale engine."""
    return model_id(model_dir)


def cache_dir(model_dir: str | Path, sub: str, key: str) -> Path:
    """``<model_dir>/<sub>``, or ``~/.cache/uar-stream/<key>/<sub>`` when the model directory
    cannot be written (an installed, read-only package)."""
    d = Path(model_dir) / sub
    try:
        d.mkdir(parents=True, exist_ok=True)
        if os.access(d, os.W_OK):
            return d
    except OSError:
        pass
    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "uar-stream" / key / sub
    log.info("engine: %s is not writable; caching built engines in %s", d, root)
    root.mkdir(parents=True, exist_ok=True)
    return root


def onnx_path(model_dir: str | Path, precision: str = "fp32") -> Path:
    """Where the ONNX file of this model and precision lives (it may not exist yet)."""
    _check_precision(precision)
    key = artifact_key(model_dir)
    return cache_dir(model_dir, "onnx", key) / f"{key}-{precision}.onnx"


def _check_precision(precision: str, allowed: tuple[str, ...] = PRECISIONS) -> None:
    if precision not in allowed:
        raise ConfigError(f"engine.precision: {precision!r} cannot be exported to ONNX; "
                          f"allowed: {', '.join(allowed)}")


def _graph_for(graph: UncertaintyGraph, precision: str) -> UncertaintyGraph:
    if precision == "fp32":
        return graph
    g = copy.deepcopy(graph)
    g.fused.half()  # only the members: the temperature and the entropies stay fp32
    return g.eval()


def export_onnx(graph: UncertaintyGraph, path: str | Path, input_size: int,
                precision: str = "fp32", metadata: dict[str, str] | None = None) -> Path:
    """Write ``graph`` to ``path`` (atomically: a temp file, checked, then renamed).

    Input ``faces`` float32 (B, 1, S, S); outputs as ``graph.output_names``, batch axis dynamic.
    """
    import onnx

    _check_precision(precision, EXPORTED)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    g = _graph_for(graph, precision)
    dummy = torch.zeros(2, 1, input_size, input_size)
    axes = {name: {0: "batch"} for name in (INPUT_NAME, *graph.output_names)}
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            # The legacy exporter warns that it is legacy, and the tracer that
            # ``x.shape[1] == 1`` is frozen: the input always has one channel.
            warnings.simplefilter("ignore")
            with torch.no_grad():
                torch.onnx.export(g, (dummy,), str(tmp), dynamo=False, opset_version=OPSET,
                                  input_names=[INPUT_NAME], output_names=list(graph.output_names),
                                  dynamic_axes=axes, do_constant_folding=True)
        model = onnx.load(str(tmp))
        meta = {"graph_version": GRAPH_VERSION, "precision": precision,
                "members": str(graph.members), "input_size": str(input_size), **(metadata or {})}
        onnx.helper.set_model_props(model, {_META_PREFIX + k: str(v) for k, v in meta.items()})
        onnx.checker.check_model(model, full_check=True)
        onnx.save(model, str(tmp))  # < 2 GiB: initializers stay inside the one file
        publish(tmp, path)
    except Exception as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise ModelError(f"{path}: cannot write the ONNX file ({e})") from None
        raise
    log.info("engine: exported %s (%s) in %.1f s", path, precision, time.perf_counter() - t0)
    return path


def publish(tmp: Path, path: Path) -> None:
    """Move a finished temp file into place atomically, world-readable (mkstemp creates 0600
    files; other users of a shared model directory must be able to read the cache)."""
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def set_metadata(path: str | Path, meta: dict[str, str]) -> None:
    """Replace the ``uar_stream.*`` metadata of the file at ``path`` (rewritten in place)."""
    import onnx

    model = onnx.load(str(path))
    others = {p.key: p.value for p in model.metadata_props if not p.key.startswith(_META_PREFIX)}
    onnx.helper.set_model_props(model, {**others, **{_META_PREFIX + k: str(v) for k, v in meta.items()}})
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))


def read_onnx_metadata(path: str | Path) -> dict[str, str]:
    """The ``uar_stream.*`` metadata of an exported file (without the prefix)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {p.key[len(_META_PREFIX):]: p.value for p in model.metadata_props
            if p.key.startswith(_META_PREFIX)}


def check_onnx(path: str | Path, expected: dict[str, str], has_density: bool = False) -> str | None:
    """None if ``path`` is a valid export with this metadata (and a density output when
    ``has_density``); else why it is not."""
    import onnx

    path = Path(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
        onnx.checker.check_model(model, full_check=False)
    except Exception as e:  # noqa: BLE001 - protobuf/onnx raise many types for a bad file
        return f"not a valid ONNX file ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
    names_in = [i.name for i in model.graph.input]
    names_out = [o.name for o in model.graph.output]
    if names_in != [INPUT_NAME] or names_out != list(output_names(has_density)):
        return f"inputs {names_in} / outputs {names_out} are not the uncertainty graph's"
    meta = {p.key[len(_META_PREFIX):]: p.value for p in model.metadata_props
            if p.key.startswith(_META_PREFIX)}
    for k, v in expected.items():
        if meta.get(k) != str(v):
            return f"metadata {k} is {meta.get(k)!r}, expected {v!r}"
    return None


def ensure_onnx(model_dir: str | Path, precision: str = "fp32",
                graph: UncertaintyGraph | None = None) -> Path:
    """The checked ONNX file for this model and precision, exported if missing or invalid.

    int8 is never built here (it needs calibration faces): a missing or invalid int8 file is
    a ConfigError that says how to build it."""
    _check_precision(precision)
    model_dir = Path(model_dir)
    path = onnx_path(model_dir, precision)
    key = path.name.split("-")[0]
    expected = {"model_id": key, "graph_version": GRAPH_VERSION, "precision": precision}
    if precision == "int8":  # a file quantised another way is rebuilt, not run
        expected["int8_scheme"] = INT8_SCHEME
    has_density = read_manifest(model_dir).density is not None
    reason = check_onnx(path, expected, has_density) if path.exists() else "not built"
    if reason is None:
        log.debug("engine: reusing %s", path)
        return path
    if precision == "int8":
        state = "is not built" if reason == "not built" else f"is not usable ({reason})"
        raise ConfigError(f"engine.precision: int8: {path} {state}; build it: "
                          f"{INT8_HINT.format(model=model_dir)}")
    if path.exists():
        log.warning("engine: rebuilding %s: %s", path, reason)
    if graph is None:
        graph, man = load_graph(model_dir)
    else:
        man = read_manifest(model_dir)
    export_onnx(graph, path, man.input_size, precision, {"model_id": key})
    remove_stale(path.parent, key)
    reason = check_onnx(path, expected, has_density)
    if reason is not None:  # an export that fails its own check is a bug, not user error
        raise ModelError(f"{path}: freshly exported file is invalid: {reason}")
    return path


def remove_stale(folder: Path, key: str) -> None:
    """Delete exports of other model versions (only files named like ours)."""
    for f in folder.iterdir():
        if _ARTIFACT_RE.match(f.name) and not f.name.startswith(key + "-"):
            log.info("engine: removing stale %s", f)
            f.unlink(missing_ok=True)
