"""Engines: ONNX export, onnxruntime/torch parity on real FER+ faces, backend selection,
batch splitting, the ONNX cache; TensorRT and CUDA checks skip without a GPU."""
import json
import logging
import shutil

import numpy as np
import pytest
import torch

from uar_stream.backends import create_engine
from uar_stream.backends.export import (
    OPSET,
    artifact_key,
    ensure_onnx,
    load_graph,
    onnx_path,
    read_onnx_metadata,
)
from uar_stream.backends.graph import INPUT_NAME, OUTPUT_NAMES
from uar_stream.backends.onnxruntime_backend import OnnxRuntimeEngine
from uar_stream.errors import ConfigError
from uar_stream.model.fused_cnn import CnnArch, FusedCnn, split_members
from uar_stream.model.preprocess import prepare_batch
from uar_stream.model.store import MANIFEST, Manifest, file_sha256, write_member
from uar_stream.model.uncertainty import decompose

from tests.support.paths import DEFAULT_MODEL, FERPLUS

FIELDS = ("mean_probs", "total", "aleatoric", "epistemic", "member_probs")
CUDA = torch.cuda.is_available()


def _write_random_model(out, members=3, seed=0, temperature=0.8):
    """A model directory in the shipped format with random weights (used when the trained
    engines/default is absent)."""
    torch.manual_seed(seed)
    net = FusedCnn(members, 8, CnnArch()).eval()
    with torch.no_grad():  # non-trivial BN statistics, so folding them into the convs matters
        for mod in net.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 1.5)
    out.mkdir(parents=True)
    files = []
    for m, state in enumerate(split_members(net.state_dict(), members)):
        files.append(f"member_{m:02d}.safetensors")
        write_member(out / files[-1], state)
    man = Manifest(members=members, files=files, arch=CnnArch().to_dict(), temperature=temperature,
                   sha256={f: file_sha256(out / f) for f in files})
    (out / MANIFEST).write_text(man.to_json())
    return out


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """The trained model (copied: tests never write into engines/default) or a random one."""
    dst = tmp_path_factory.mktemp("engines") / "model"
    if (DEFAULT_MODEL / MANIFEST).is_file():
        man = json.loads((DEFAULT_MODEL / MANIFEST).read_text())
        dst.mkdir()
        density = [man["density"]["file"]] if man.get("density") else []
        for name in [MANIFEST, *man["files"], *density]:
            shutil.copy2(DEFAULT_MODEL / name, dst / name)
        return dst
    return _write_random_model(dst)


@pytest.fixture(scope="module")
def faces():
    """64 real FER+ PublicTest faces as model input (1, 48, 48)."""
    path = FERPLUS / "publictest.npz"
    if not path.is_file():
        pytest.skip(f"{path} not available")
    return prepare_batch(np.load(path)["images"][:64])


@pytest.fixture(scope="module")
def graph(model_dir):
    return load_graph(model_dir)


@pytest.fixture(scope="module")
def onnx_file(model_dir):
    return ensure_onnx(model_dir)


@pytest.fixture(scope="module")
def ort_engine(model_dir, onnx_file, graph):
    man = graph[1]
    return OnnxRuntimeEngine(onnx_file, man.members, len(man.classes), man.input_size)


def _torch_outputs(graph, x):
    with torch.no_grad():
        # the five outputs every graph has (the density output is tested in test_density.py)
        return [t.numpy() for t in graph[0](torch.from_numpy(x))][:len(FIELDS)]


def test_export_is_one_checked_file_with_named_dynamic_io(model_dir, onnx_file, graph):
    import onnx
    from onnx.external_data_helper import uses_external_data

    model = onnx.load(str(onnx_file))
    onnx.checker.check_model(model, full_check=True)
    assert onnx_file == onnx_path(model_dir, "fp32")
    assert onnx_file.name == f"{artifact_key(model_dir)}-fp32.onnx"
    assert [i.name for i in model.graph.input] == [INPUT_NAME]
    assert [o.name for o in model.graph.output] == list(graph[0].output_names)
    assert list(graph[0].output_names[:5]) == list(OUTPUT_NAMES)
    for value in [*model.graph.input, *model.graph.output]:
        dim0 = value.type.tensor_type.shape.dim[0]
        assert dim0.dim_param and not dim0.dim_value, f"{value.name}: batch axis is not dynamic"
    assert not any(uses_external_data(t) for t in model.graph.initializer)
    assert sorted(p.name for p in onnx_file.parent.iterdir()) == [onnx_file.name]
    assert any(o.version == OPSET for o in model.opset_import)
    meta = read_onnx_metadata(onnx_file)
    assert meta["model_id"] == artifact_key(model_dir)
    assert meta["members"] == str(graph[1].members)


def test_onnxruntime_matches_torch_on_real_faces(ort_engine, graph, faces):
    out = ort_engine.infer(faces)
    ref = _torch_outputs(graph, faces)
    assert out.member_probs.shape == (64, graph[1].members, 8)
    for name, ref_value in zip(FIELDS, ref, strict=True):
        diff = np.abs(getattr(out, name) - ref_value).max()
        assert diff <= 1e-4, f"{name}: onnxruntime differs from torch by {diff:.2e}"
    assert (out.mean_probs.argmax(1) == ref[0].argmax(1)).all()


def test_graph_uncertainties_equal_numpy_decomposition(ort_engine, graph, faces):
    for outs in (_torch_outputs(graph, faces), [getattr(ort_engine.infer(faces), f) for f in FIELDS]):
        d = decompose(outs[4])
        # mean_probs are at the calibration temperature, member_probs at the decomposition one
        man = graph[1]
        shown = decompose(outs[4], man.temperature / man.uncertainty_temperature).mean_probs
        np.testing.assert_allclose(outs[0], shown, atol=1e-5)
        for name, got, want in zip(FIELDS[1:4], outs[1:4], (d.total, d.aleatoric, d.epistemic), strict=True):
            np.testing.assert_allclose(got, want, atol=1e-5, err_msg=name)
        # The decomposition adds up, and the members disagree somewhere (else it is vacuous).
        np.testing.assert_allclose(outs[1], outs[2] + outs[3], atol=1e-5)
        assert outs[3].max() > 1e-4


def test_auto_chooses_onnxruntime_here_and_says_why(model_dir, caplog):
    from uar_stream.backends import tensorrt_backend

    if CUDA or tensorrt_backend.unavailable_reason() is None:
        pytest.skip("a GPU backend is usable here; auto would rightly prefer it")
    with caplog.at_level(logging.DEBUG, logger="uar_stream.engine"):
        eng = create_engine(model_dir, "auto")
        fallback = create_engine(model_dir, "auto", precision="fp16")
    assert eng.name == fallback.name == "onnxruntime"
    lines = [r for r in caplog.records if "auto chose" in r.message]
    assert len(lines) == 2 and "\n" not in lines[0].message
    # nothing is wrong with the first choice; the second does not give what was asked for
    assert [r.levelno for r in lines] == [logging.INFO, logging.WARNING]
    msg = lines[0].message
    assert "auto chose onnxruntime" in msg
    assert "tensorrt (tensorrt is not installed" in msg and "torch-cuda (" in msg
    assert "precision fp16 is for GPU backends, running fp32" in lines[1].message


def test_batches_above_max_batch_are_split(onnx_file, graph, faces):
    man = graph[1]
    small = OnnxRuntimeEngine(onnx_file, man.members, len(man.classes), man.input_size, max_batch=16)
    sizes = []
    run = small.session.run
    small.session.run = lambda names, feeds: sizes.append(len(feeds[INPUT_NAME])) or run(names, feeds)
    out = small.infer(faces[:40])
    assert sizes == [16, 16, 8]
    ref = _torch_outputs(graph, faces[:40])
    for name, ref_value in zip(FIELDS, ref, strict=True):
        assert np.abs(getattr(out, name) - ref_value).max() <= 1e-4, name
    empty = small.infer(faces[:0])
    assert empty.member_probs.shape == (0, man.members, 8) and len(empty) == 0
    with pytest.raises(ValueError, match="shape"):
        small.infer(faces[:2, :, :24])


def test_corrupt_or_truncated_onnx_is_rebuilt(tmp_path, model_dir, caplog):
    model = tmp_path / "model"
    shutil.copytree(model_dir, model, ignore=shutil.ignore_patterns("onnx", "cache"))
    path = ensure_onnx(model)
    good = path.read_bytes()
    for bad in (b"not an onnx file" * 10, good[: len(good) // 2]):
        path.write_bytes(bad)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="uar_stream.engine"):
            assert ensure_onnx(model) == path
        assert any("rebuilding" in r.message for r in caplog.records)
        eng = create_engine(model, "onnxruntime")
        assert eng.infer(np.zeros((2, 1, 48, 48), np.float32)).mean_probs.shape == (2, 8)


def test_onnx_is_rebuilt_when_the_model_changes(tmp_path, model_dir, faces):
    model = tmp_path / "model"
    shutil.copytree(model_dir, model, ignore=shutil.ignore_patterns("onnx", "cache"))
    old = ensure_onnx(model)
    before = create_engine(model, "onnxruntime").infer(faces[:8])
    man = json.loads((model / MANIFEST).read_text())
    man["temperature"] = man["temperature"] * 2  # recalibrated: same weights, new model id
    (model / MANIFEST).write_text(json.dumps(man))
    new = ensure_onnx(model)
    assert new != old and new.exists() and not old.exists()
    after = create_engine(model, "onnxruntime").infer(faces[:8])
    # softer displayed probabilities now (the uncertainties keep their decomposition temperature)
    assert np.abs(after.mean_probs - before.mean_probs).max() > 1e-3


def test_fp16_export_is_close_to_fp32(model_dir, graph, faces):
    import onnx

    path = ensure_onnx(model_dir, "fp16")
    assert path.name.endswith("-fp16.onnx")
    model = onnx.load(str(path))
    conv_weights = {n.input[1] for n in model.graph.node if n.op_type == "Conv"}
    types = {t.data_type for t in model.graph.initializer if t.name in conv_weights}
    assert types == {onnx.TensorProto.FLOAT16}, "conv weights should be fp16"
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    eng = create_engine(model_dir, "onnxruntime", precision="fp16")
    out, ref = eng.infer(faces), _torch_outputs(graph, faces)
    for name, ref_value in zip(FIELDS, ref, strict=True):
        assert np.abs(getattr(out, name) - ref_value).max() <= 5e-3, name
        assert np.isfinite(getattr(out, name)).all()


def test_explicit_backends_that_cannot_run_fail_in_one_line(model_dir):
    from uar_stream.backends import tensorrt_backend

    cases = [dict(backend="onnxruntime", precision="bf16"), dict(backend="tpu"),
             dict(backend="auto", max_batch=0)]
    if tensorrt_backend.unavailable_reason():
        cases.append(dict(backend="tensorrt"))
    if not CUDA:
        cases.append(dict(backend="torch", device="cuda"))
    for kwargs in cases:
        with pytest.raises(ConfigError) as e:
            create_engine(model_dir, **kwargs)
        msg = str(e.value)
        assert "\n" not in msg and msg.startswith("engine."), (kwargs, msg)


def test_a_broken_model_is_a_model_error_not_a_backend_fallback(tmp_path, model_dir):
    from uar_stream.errors import ModelError

    model = tmp_path / "model"
    shutil.copytree(model_dir, model, ignore=shutil.ignore_patterns("onnx", "cache"))
    (model / "member_00.safetensors").write_bytes(b"corrupt")
    with pytest.raises(ModelError, match="member_00.safetensors"):
        create_engine(model, "auto")


def test_build_engine_command_writes_and_prints_the_onnx(tmp_path, model_dir, capsys):
    from uar_stream.backends import tensorrt_backend
    from uar_stream.cli.main import main

    model = tmp_path / "model"
    shutil.copytree(model_dir, model, ignore=shutil.ignore_patterns("onnx", "cache"))
    assert main(["build-engine", "--model", str(model)]) == 0
    out = capsys.readouterr().out
    path = onnx_path(model, "fp32")
    assert path.is_file() and f"onnx:     {path}" in out
    if tensorrt_backend.unavailable_reason():
        assert "tensorrt: skipped (" in out
    assert main(["build-engine", "--model", str(tmp_path / "missing")]) == 2


@pytest.mark.skipif(not CUDA, reason=f"no CUDA GPU here (torch {torch.__version__})")
@pytest.mark.parametrize("precision,tol", [("fp32", 2e-3), ("fp16", 2e-2), ("bf16", 5e-2)])
def test_torch_cuda_matches_cpu_with_graph_buckets(model_dir, graph, faces, precision, tol):
    eng = create_engine(model_dir, "torch", "cuda", precision)
    assert eng.runner is not None and eng.runner.buckets == (1, 8, 16, 32, 64)
    ref = _torch_outputs(graph, faces)
    full = eng.infer(faces)
    part = eng.infer(faces[:5])  # padded to the bucket of 8
    for name, ref_value in zip(FIELDS, ref, strict=True):
        assert np.abs(getattr(full, name) - ref_value).max() <= tol, name
        np.testing.assert_allclose(getattr(part, name), getattr(full, name)[:5], atol=1e-3)


def test_tensorrt_engine_matches_torch(tmp_path, model_dir, graph, faces):
    from uar_stream.backends import tensorrt_backend

    why = tensorrt_backend.unavailable_reason()
    if why:
        pytest.skip(f"TensorRT backend untested here: {why} (STACK.md: not installable on these machines)")
    model = tmp_path / "model"
    shutil.copytree(model_dir, model, ignore=shutil.ignore_patterns("onnx", "cache"))
    eng = create_engine(model, "tensorrt", "cuda", "fp32")
    plan = eng.plan_file
    out, ref = eng.infer(faces), _torch_outputs(graph, faces)
    for name, ref_value in zip(FIELDS, ref, strict=True):
        assert np.abs(getattr(out, name) - ref_value).max() <= 2e-3, name
    mtime = plan.stat().st_mtime_ns
    assert create_engine(model, "tensorrt", "cuda", "fp32").plan_file == plan
    assert plan.stat().st_mtime_ns == mtime  # reused, not rebuilt
