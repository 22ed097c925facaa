"""The int8 CPU engine: onnxruntime static quantisation of the fp32 export.

What is quantised, and why: only the members' feature extractor (every Conv, Relu and Add
upstream of the global average pool), in QDQ format with per-channel int8 weights held to 7
bits (:data:`uar_stream.backends.export.INT8_SCHEME`: full 8-bit weights saturate on x86
CPUs without VNNI) and uint8 activations. uint8 activations are onnxruntime's fast x86 path
(U8S8 QLinearConv); int8 activations measured 3-4x slower on the same faces and no closer to
fp32. The head conv (the logits), the temperatures, softmax, the entropies and the density
score's matmul stay fp32: int8 logits at temperature 0.55 move the probabilities by up to 0.07
and the density score by 1.3 (against a 1.5 threshold); excluding them keeps 99.4% of PublicTest
faces on their fp32 route (docs/engines.md#precision).

Calibration needs training faces, which the installed package does not carry (the FER+
images are not ours to redistribute), so the int8 file is built once by
``uar-stream build-engine --precision int8 --calibration train.npz`` into the same cache as
the other precisions, or with ``--ship`` into the model directory as a shipped, hash-checked
artifact (:mod:`uar_stream.backends.shipped`; engines/default ships one); at run time a missing
file is a one-line error saying that.
The calibration sample is fixed and seeded (:data:`CALIBRATION_FACES` faces, seed
:data:`CALIBRATION_SEED`), prepared with :func:`uar_stream.model.preprocess.prepare_batch` as at
inference, and its sha256 is written into the file's metadata.
"""
from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from uar_stream.backends.export import (
    GRAPH_VERSION,
    INT8_SCHEME,
    check_onnx,
    ensure_onnx,
    onnx_path,
    publish,
    read_onnx_metadata,
    remove_stale,
    set_metadata,
)
from uar_stream.backends.graph import INPUT_NAME
from uar_stream.errors import DataError, ModelError
from uar_stream.labels import emotion_rows
from uar_stream.model.preprocess import prepare_batch
from uar_stream.model.store import read_manifest

log = logging.getLogger("uar_stream.engine")

#: Faces in the calibration sample, and the seed that draws them from the training file.
CALIBRATION_FACES = 512
CALIBRATION_SEED = 0
#: Faces per calibration inference call.
_CALIBRATION_BATCH = 32
#: The ops quantised, where they compute the members' features (see the module docstring).
QUANTISED_OPS = ("Conv", "Relu", "Add")


def calibration_sample(path: str | Path, n: int = CALIBRATION_FACES,
                       seed: int = CALIBRATION_SEED) -> tuple[np.ndarray, str]:
    """(model input (n, 1, S, S) float32, its sha256) from an .npz of training faces.

    ``images`` uint8 (N, S, S) is required; with FER+ ``votes`` the rows where unknown/NF
    wins are left out first. The sample is drawn with ``seed`` and sorted, so the same file
    always gives the same sample (and the same hash)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"--calibration: {path} not found (an .npz with 'images' uint8 [N,S,S])")
    try:
        with np.load(path, allow_pickle=False) as d:
            images = d["images"]
            votes = d["votes"] if "votes" in d.files else None
    except KeyError:
        raise DataError(f"{path}: no 'images' array (need uint8 [N,S,S])") from None
    except Exception as e:  # noqa: BLE001 - zip/format errors from numpy
        raise DataError(f"{path}: not a readable .npz file ({e})") from None
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(f"{path}: 'images' must be uint8 [N,S,S], got {images.dtype} {images.shape}")
    rows = np.arange(len(images)) if votes is None else np.flatnonzero(emotion_rows(votes))
    take = np.sort(np.random.default_rng(seed).choice(rows, min(n, len(rows)), replace=False))
    faces = prepare_batch(images[take])
    return faces, hashlib.sha256(faces.tobytes()).hexdigest()


def feature_nodes(model) -> list[str]:
    """Names of the :data:`QUANTISED_OPS` nodes upstream of a GlobalAveragePool (the members'
    convolutional trunk); what comes after the pool (head, uncertainties, density) is left out."""
    producer = {out: node for node in model.graph.node for out in node.output}
    todo = [node for node in model.graph.node if node.op_type == "GlobalAveragePool"]
    seen: set[str] = set()
    while todo:
        node = todo.pop()
        for name in node.input:
            up = producer.get(name)
            if up is not None and up.name not in seen:
                seen.add(up.name)
                todo.append(up)
    return [n.name for n in model.graph.node if n.name in seen and n.op_type in QUANTISED_OPS]


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over an in-memory sample."""

    def __init__(self, faces: np.ndarray):
        self.faces, self.i = faces, 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        """The next batch, or None when the sample is used up."""
        if self.i >= len(self.faces):
            return None
        batch = self.faces[self.i:self.i + _CALIBRATION_BATCH]
        self.i += _CALIBRATION_BATCH
        return {INPUT_NAME: batch}

    def rewind(self) -> None:
        """Start over (onnxruntime may read the sample more than once)."""
        self.i = 0


def _intermediate_cap(batches: int) -> int | None:
    # Caps the activations held at once (memory); onnxruntime 1.32 raises "No data is
    # collected" when the batch count is a multiple of the cap, so pick one that is not.
    for cap in (5, 4, 3, 7):
        if batches % cap:
            return cap
    return None


def quantize_int8(fp32_file: str | Path, out: str | Path, faces: np.ndarray) -> None:
    """Write the int8 graph of ``fp32_file`` to ``out`` (no metadata), calibrated on ``faces``."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    nodes = feature_nodes(onnx.load(str(fp32_file)))
    if not nodes:
        raise ModelError(f"{fp32_file}: no convolutional feature extractor to quantise to int8 "
                         "(int8 supports the CNN backbone only)")
    batches = -(-len(faces) // _CALIBRATION_BATCH)
    logging.getLogger().disabled, was = True, logging.getLogger().disabled  # it warns on root
    try:
        quantize_static(str(fp32_file), str(out), _Reader(faces), quant_format=QuantFormat.QDQ,
                        per_channel=True, reduce_range=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, nodes_to_quantize=nodes,
                        op_types_to_quantize=list(QUANTISED_OPS),
                        calibrate_method=CalibrationMethod.MinMax,
                        extra_options={"CalibMaxIntermediateOutputs": _intermediate_cap(batches)})
    finally:
        logging.getLogger().disabled = was


def write_int8(fp32: Path, path: Path, faces: np.ndarray, cal_hash: str, seed: int,
               calibration_name: str) -> None:
    """Quantise ``fp32`` on ``faces`` into ``path`` (atomically), with the fp32 file's metadata
    plus the precision and the calibration sample (its sha256, size, seed and file name)."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        quantize_int8(fp32, tmp, faces)
        meta = {**read_onnx_metadata(fp32), "precision": "int8", "int8_scheme": INT8_SCHEME,
                "calibration_sha256": cal_hash,
                "calibration_faces": str(len(faces)), "calibration_seed": str(seed),
                "calibration_file": calibration_name}
        set_metadata(tmp, meta)
        publish(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def build_int8(model_dir: str | Path, calibration: str | Path, force: bool = False,
               n: int = CALIBRATION_FACES, seed: int = CALIBRATION_SEED) -> Path:
    """Build (or reuse) ``<model_dir>/onnx/<id>-int8.onnx`` calibrated on ``calibration``.

    A valid file calibrated on the same sample (same sha256) is reused unless ``force``."""
    model_dir = Path(model_dir)
    path = onnx_path(model_dir, "int8")
    key = path.name.split("-")[0]
    faces, cal_hash = calibration_sample(calibration, n, seed)
    expected = {"model_id": key, "graph_version": GRAPH_VERSION, "precision": "int8",
                "int8_scheme": INT8_SCHEME, "calibration_sha256": cal_hash}
    has_density = read_manifest(model_dir).density is not None
    if path.exists() and not force and check_onnx(path, expected, has_density) is None:
        log.info("engine: reusing %s (same calibration sample)", path)
        return path
    fp32 = ensure_onnx(model_dir, "fp32")
    t0 = time.perf_counter()
    write_int8(fp32, path, faces, cal_hash, seed, Path(calibration).name)
    remove_stale(path.parent, key)
    reason = check_onnx(path, expected, has_density)
    if reason is not None:  # a build that fails its own check is a bug, not user error
        raise ModelError(f"{path}: freshly quantised file is invalid: {reason}")
    log.info("engine: quantised %s to int8 on %d faces in %.1f s", path, len(faces),
             time.perf_counter() - t0)
    return path
