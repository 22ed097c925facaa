"""The int8 onnxruntime engine: built from the shipped model on real training faces, close to fp32
on real PublicTest faces, cached by model and calibration sample; int8 elsewhere is refused."""
import json
import shutil

import numpy as np
import pytest

from uar_stream.backends import create_engine
from uar_stream.backends.export import INT8_SCHEME, ensure_onnx, onnx_path, read_onnx_metadata, set_metadata
from uar_stream.backends.quantize import build_int8, calibration_sample
from uar_stream.config import load_config
from uar_stream.errors import ConfigError, DataError
from uar_stream.model.preprocess import prepare_batch
from uar_stream.model.store import MANIFEST

from tests.support.int8 import NO_SATURATION_WEIGHT, widest_int8_weight
from tests.support.paths import DEFAULT_MODEL, FERPLUS, need

# A smaller sample than the 512 build-engine uses keeps the build to a few seconds.
CAL_FACES = 128


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A copy of the shipped model without its shipped int8 file (tests never write into
    engines/default): the int8 file these tests use is built locally (test_int8_shipped.py
    covers the shipped one). Leaving the manifest's int8 entry out keeps the model id."""
    need(DEFAULT_MODEL / MANIFEST)
    dst = tmp_path_factory.mktemp("int8") / "model"
    dst.mkdir()
    man = json.loads((DEFAULT_MODEL / MANIFEST).read_text())
    density = [man["density"]["file"]] if man.get("density") else []
    for name in [*man["files"], *density]:
        shutil.copy2(DEFAULT_MODEL / name, dst / name)
    man.pop("int8", None)
    (dst / MANIFEST).write_text(json.dumps(man, indent=2))
    return dst


@pytest.fixture(scope="module")
def train_npz():
    return need(FERPLUS / "train.npz")


@pytest.fixture(scope="module")
def int8_file(model_dir, train_npz):
    with pytest.raises(ConfigError) as e:  # before the build: run time says how to build it
        ensure_onnx(model_dir, "int8")
    assert "\n" not in str(e.value) and "build-engine" in str(e.value) and "--calibration" in str(e.value)
    return build_int8(model_dir, train_npz, n=CAL_FACES)


@pytest.fixture(scope="module")
def faces():
    """48 real FER+ PublicTest faces as model input."""
    return prepare_batch(np.load(need(FERPLUS / "publictest.npz"))["images"][:48])


def test_int8_file_is_cached_beside_fp32_with_its_calibration(model_dir, int8_file, train_npz):
    import onnx

    assert int8_file == onnx_path(model_dir, "int8")
    meta = read_onnx_metadata(int8_file)
    assert meta["precision"] == "int8" and meta["calibration_faces"] == str(CAL_FACES)
    assert meta["calibration_sha256"] == calibration_sample(train_npz, CAL_FACES)[1]
    model = onnx.load(str(int8_file))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    # the head, the uncertainties and the density matmul stay fp32: no DQ feeds them
    dq_out = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    head = [n for n in model.graph.node if n.op_type in ("MatMul", "Softmax", "LogSoftmax")]
    head += [n for n in model.graph.node if n.op_type == "Conv" and n.name.startswith("/head")]
    assert head and not any(i in dq_out for n in head for i in n.input)
    mtime = int8_file.stat().st_mtime_ns  # same sample: reused, not rebuilt
    assert build_int8(model_dir, train_npz, n=CAL_FACES).stat().st_mtime_ns == mtime
    assert ensure_onnx(model_dir, "int8") == int8_file


def test_int8_weights_cannot_saturate_on_cpus_without_vnni(int8_file, tmp_path):
    # full 8-bit weights passed here (VNNI) and were off by 0.48 on CI's AVX2 CPU
    assert read_onnx_metadata(int8_file)["int8_scheme"] == INT8_SCHEME
    assert widest_int8_weight(int8_file) <= NO_SATURATION_WEIGHT


def test_a_cached_int8_file_of_another_scheme_is_not_run(model_dir, int8_file):
    saved = int8_file.read_bytes()
    try:
        set_metadata(int8_file, {**read_onnx_metadata(int8_file), "int8_scheme": "u8s8"})
        with pytest.raises(ConfigError) as e:
            ensure_onnx(model_dir, "int8")
        msg = str(e.value)
        assert "\n" not in msg and "metadata int8_scheme is 'u8s8'" in msg and "build-engine" in msg
    finally:
        int8_file.write_bytes(saved)
    assert ensure_onnx(model_dir, "int8") == int8_file


def test_int8_engine_is_close_to_fp32_on_real_faces(model_dir, int8_file, faces):
    q = create_engine(model_dir, "onnxruntime", "cpu", "int8")
    ref = create_engine(model_dir, "onnxruntime", "cpu", "fp32")
    assert q.onnx_path == int8_file
    out, want = q.infer(faces), ref.infer(faces)
    members = out.member_probs.shape[1]
    assert out.mean_probs.shape == (48, 8) and out.member_probs.shape == (48, members, 8)
    for name in ("total", "aleatoric", "epistemic", "density"):
        assert getattr(out, name).shape == (48,)
    assert np.abs(out.mean_probs - want.mean_probs).max() < 0.1
    assert (out.mean_probs.argmax(1) == want.mean_probs.argmax(1)).mean() >= 0.95
    for name, tol in (("aleatoric", 0.1), ("epistemic", 0.05), ("density", 0.5)):
        diff = np.abs(getattr(out, name) - getattr(want, name)).max()
        assert diff < tol, f"{name}: int8 differs from fp32 by {diff:.3f}"


def test_auto_with_int8_runs_onnxruntime(model_dir, int8_file):
    assert create_engine(model_dir, "auto", "auto", "int8").onnx_path == int8_file


@pytest.mark.parametrize("engine", [{"backend": "torch"}, {"backend": "tensorrt"}, {"device": "cuda"}])
def test_config_refuses_int8_off_onnxruntime_cpu_in_one_line(engine):
    with pytest.raises(ConfigError) as e:
        load_config({"engine": {"precision": "int8", **engine}})
    msg = str(e.value)
    assert msg.startswith("engine.precision: int8") and "onnxruntime" in msg and "\n" not in msg
    assert load_config({"engine": {"precision": "int8", "backend": "onnxruntime"}}).engine.precision == "int8"


def test_create_engine_refuses_int8_on_torch(model_dir):
    with pytest.raises(ConfigError, match="int8 runs on backend onnxruntime"):
        create_engine(model_dir, "torch", "cpu", "int8")


def test_calibration_sample_is_seeded_and_checked(tmp_path, train_npz):
    a, ha = calibration_sample(train_npz, 16)
    b, hb = calibration_sample(train_npz, 16)
    assert a.shape == (16, 1, 48, 48) and a.dtype == np.float32 and ha == hb
    assert calibration_sample(train_npz, 16, seed=1)[1] != ha
    bad = tmp_path / "bad.npz"
    np.savez(bad, pixels=np.zeros((2, 48, 48), np.uint8))
    with pytest.raises(DataError, match="no 'images'"):
        calibration_sample(bad)


def test_precision_auto_is_int8_once_built_else_fp32(tmp_path, model_dir, int8_file, caplog):
    assert load_config().engine.precision == "auto"
    assert create_engine(model_dir, "onnxruntime", "cpu", "auto").onnx_path == int8_file
    assert create_engine(model_dir, "auto", "cpu", "auto").onnx_path == int8_file
    bare = tmp_path / "bare"  # the same model without a built int8 file
    shutil.copytree(model_dir, bare, ignore=shutil.ignore_patterns("onnx"))
    with caplog.at_level("INFO", logger="uar_stream.engine"):
        eng = create_engine(bare, "auto", "cpu", "auto")
    assert eng.onnx_path.name.endswith("-fp32.onnx")
    assert "precision auto runs fp32" in caplog.text and "build-engine" in caplog.text
