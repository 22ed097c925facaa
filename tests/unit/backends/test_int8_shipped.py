"""The int8 engine shipped in the model directory (engine_int8.onnx, manifest ``int8``): precision
auto runs it on the CPU with no local build, a changed byte is a one-line error, a file quantised
from other members is ignored with one warning, and it equals a local build on the same sample."""
import json
import logging
import shutil

import numpy as np
import pytest

from uar_stream.backends import create_engine
from uar_stream.backends.export import GRAPH_VERSION, INT8_SCHEME, onnx_path, read_onnx_metadata
from uar_stream.backends.onnxruntime_backend import OnnxRuntimeEngine
from uar_stream.backends.quantize import build_int8
from uar_stream.backends.shipped import SHIPPED_FILE, find_int8, ship_int8
from uar_stream.errors import ConfigError, ModelError
from uar_stream.model.preprocess import prepare_batch
from uar_stream.model.store import MANIFEST, file_sha256, model_id, read_manifest

from tests.support.int8 import NO_SATURATION_WEIGHT, widest_int8_weight
from tests.support.paths import DEFAULT_MODEL, FERPLUS, MEDIA, need


def _copy(src, dst, int8=True):
    """The model directory's own files (no onnx/ or cache/ built engines); ``int8=False`` also
    leaves the shipped int8 file and its manifest entry out."""
    dst.mkdir(parents=True)
    man = json.loads((src / MANIFEST).read_text())
    names = [*man["files"], *([man["density"]["file"]] if man.get("density") else [])]
    if int8:
        names.append(man["int8"]["file"])
    else:
        man.pop("int8", None)
    for name in names:
        shutil.copy2(src / name, dst / name)
    (dst / MANIFEST).write_text(json.dumps(man, indent=2) + "\n")
    return dst


@pytest.fixture(scope="module")
def shipped_src():
    """The checkout's model directory, which ships an int8 file (skips when it does not)."""
    man = json.loads(need(DEFAULT_MODEL / MANIFEST).read_text())
    if not man.get("int8"):
        pytest.skip(f"{DEFAULT_MODEL} ships no int8 file")
    return DEFAULT_MODEL


@pytest.fixture
def shipped(shipped_src, tmp_path):
    """A fresh copy of the shipped model, int8 file included, no built engines."""
    return _copy(shipped_src, tmp_path / "model")


@pytest.fixture(scope="module")
def faces():
    """256 real FER+ PublicTest faces as model input."""
    with np.load(need(FERPLUS / "publictest.npz")) as d:
        return prepare_batch(d["images"][:256])


def _engine_lines(caplog, level):
    return [r.getMessage() for r in caplog.records if r.name == "uar_stream.engine" and r.levelno == level]


def test_the_checkout_ships_an_int8_file_of_its_own_members(shipped_src):
    man = read_manifest(shipped_src)
    entry = man.int8
    assert entry["file"] == SHIPPED_FILE and entry["sha256"] == file_sha256(shipped_src / SHIPPED_FILE)
    assert entry["model_id"] == model_id(shipped_src) and entry["graph_version"] == GRAPH_VERSION
    assert entry["calibration"]["faces"] == 512 and entry["calibration"]["seed"] == 0
    # calibrated on the members' own training data (the same content hash the training recorded)
    assert entry["calibration"]["data_sha256"] == man.training["data"]["train_sha256"]
    meta = read_onnx_metadata(shipped_src / SHIPPED_FILE)
    assert meta["precision"] == "int8" and meta["model_id"] == entry["model_id"]
    assert meta["calibration_sha256"] == entry["calibration"]["sample_sha256"]
    assert (shipped_src / SHIPPED_FILE).stat().st_size < 6 * 2**20
    # quantised so that no CPU saturates it (CPUs without VNNI do with 8-bit weights)
    assert entry["scheme"] == meta["int8_scheme"] == INT8_SCHEME
    assert widest_int8_weight(shipped_src / SHIPPED_FILE) <= NO_SATURATION_WEIGHT


def test_auto_runs_the_shipped_int8_on_the_cpu_with_nothing_built(shipped, faces, caplog):
    with caplog.at_level(logging.INFO, logger="uar_stream.engine"):
        eng = create_engine(shipped, "auto", "auto", "auto")
    assert eng.name == "onnxruntime" and eng.onnx_path == shipped / SHIPPED_FILE
    chose = [m for m in _engine_lines(caplog, logging.INFO) if "auto chose" in m]
    assert len(chose) == 1 and f"{SHIPPED_FILE}, int8 shipped with the model" in chose[0]
    assert not _engine_lines(caplog, logging.WARNING)
    assert not onnx_path(shipped, "int8").exists()  # nothing was quantised here
    assert create_engine(shipped, "onnxruntime", "cpu", "int8").onnx_path == shipped / SHIPPED_FILE
    out, ref = eng.infer(faces), create_engine(shipped, "onnxruntime", "cpu", "fp32").infer(faces)
    assert np.abs(out.mean_probs - ref.mean_probs).max() < 0.1
    assert (out.mean_probs.argmax(1) == ref.mean_probs.argmax(1)).mean() >= 0.95
    # GPU precisions and an explicit fp32 never take it
    assert create_engine(shipped, "auto", "cpu", "fp32").onnx_path.name.endswith("-fp32.onnx")


def test_a_shipped_file_with_one_byte_flipped_is_a_one_line_error(shipped):
    path = shipped / SHIPPED_FILE
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    for backend, precision in (("auto", "auto"), ("onnxruntime", "int8"), ("auto", "int8")):
        with pytest.raises(ModelError) as e:
            create_engine(shipped, backend, "cpu", precision)
        msg = str(e.value)
        assert "\n" not in msg and msg.startswith(f"{path}: sha256 differs"), msg
    assert create_engine(shipped, "auto", "cpu", "fp32").onnx_path.name.endswith("-fp32.onnx")


def test_uar_stream_run_with_a_changed_shipped_file_exits_2_in_one_line(shipped, tmp_path, capsys):
    from uar_stream.cli.main import main

    image = need(MEDIA / "faceapi_happy.jpg")
    path = shipped / SHIPPED_FILE
    path.write_bytes(path.read_bytes()[:-1] + bytes([path.read_bytes()[-1] ^ 0x01]))
    events = tmp_path / "e.jsonl"
    assert main(["run", "--model", str(shipped), "--source", str(image), "--events", str(events)]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert err[0] == f"uar-stream run: error: {path}: sha256 differs from the manifest's int8 entry " \
                     "(file changed or corrupt)"


def _retrained(model):
    """The same directory after a recalibration: a new model id, the shipped entry's old one."""
    man = json.loads((model / MANIFEST).read_text())
    man["temperature"] = round(man["temperature"] * 1.5, 4)
    (model / MANIFEST).write_text(json.dumps(man, indent=2))


def _entry_for_other_members(model):
    man = json.loads((model / MANIFEST).read_text())
    man["int8"]["model_id"] = "0" * 16
    (model / MANIFEST).write_text(json.dumps(man, indent=2))


def _entry_of_8bit_weights(model):
    """An entry written before the scheme was recorded: full 8-bit weights."""
    man = json.loads((model / MANIFEST).read_text())
    man["int8"].pop("scheme")
    (model / MANIFEST).write_text(json.dumps(man, indent=2))


@pytest.mark.parametrize("make_stale", [_retrained, _entry_for_other_members, _entry_of_8bit_weights])
def test_a_stale_shipped_file_is_ignored_with_one_warning(shipped, caplog, make_stale):
    make_stale(shipped)
    entry = read_manifest(shipped).int8
    assert entry["model_id"] != model_id(shipped) or entry.get("scheme") != INT8_SCHEME
    with caplog.at_level(logging.INFO, logger="uar_stream.engine"):
        eng = create_engine(shipped, "auto", "cpu", "auto")
    assert eng.onnx_path == onnx_path(shipped, "fp32")
    warnings = _engine_lines(caplog, logging.WARNING)
    assert len(warnings) == 1 and "\n" not in warnings[0], warnings
    assert "precision auto runs fp32" in warnings[0] and f"{SHIPPED_FILE} is stale" in warnings[0]
    assert "--ship" in warnings[0]
    with pytest.raises(ConfigError) as e:  # asked for outright: an error that says how to rebuild
        create_engine(shipped, "onnxruntime", "cpu", "int8")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("engine.precision: int8: the shipped ")
    assert "is stale" in msg and "build-engine" in msg and "--calibration" in msg and "--ship" in msg


def test_a_missing_shipped_file_falls_back_with_a_warning(shipped, caplog):
    (shipped / SHIPPED_FILE).unlink()
    with caplog.at_level(logging.INFO, logger="uar_stream.engine"):
        assert create_engine(shipped, "auto", "cpu", "auto").onnx_path == onnx_path(shipped, "fp32")
    (warning,) = _engine_lines(caplog, logging.WARNING)
    assert SHIPPED_FILE in warning and "is missing" in warning and "--ship" in warning


def test_a_manifest_without_an_int8_entry_still_loads_and_builds_as_before(shipped_src, tmp_path, caplog):
    bare = _copy(shipped_src, tmp_path / "bare", int8=False)
    assert read_manifest(bare).int8 is None and model_id(bare) == model_id(shipped_src)
    assert "int8" not in json.loads(read_manifest(bare).to_json())
    with caplog.at_level(logging.INFO, logger="uar_stream.engine"):
        assert create_engine(bare, "auto", "cpu", "auto").onnx_path.name.endswith("-fp32.onnx")
    assert not _engine_lines(caplog, logging.WARNING)
    assert any("precision auto runs fp32" in m and "is not built" in m
               for m in _engine_lines(caplog, logging.INFO))


def test_ship_writes_the_file_and_entry_and_keeps_the_model_id(shipped_src, tmp_path, faces):
    train = need(FERPLUS / "train.npz")
    model = _copy(shipped_src, tmp_path / "model", int8=False)
    before = model_id(model)
    path = ship_int8(model, train, n=64)
    entry = read_manifest(model).int8
    assert path == model / SHIPPED_FILE and entry["sha256"] == file_sha256(path)
    assert entry["model_id"] == before == model_id(model) and entry["calibration"]["faces"] == 64
    assert find_int8(model).source == "shipped"
    mtime = path.stat().st_mtime_ns  # the same sample again: kept, not requantised
    assert ship_int8(model, train, n=64) == path and path.stat().st_mtime_ns == mtime
    assert ship_int8(model, train, n=64, force=True).stat().st_mtime_ns != mtime
    out = create_engine(model, "auto", "cpu", "auto").infer(faces[:16])
    assert out.mean_probs.shape == (16, 8) and np.isfinite(out.density).all()


def test_build_engine_ship_is_only_for_int8(shipped, capsys):
    from uar_stream.cli.main import main

    assert main(["build-engine", "--model", str(shipped), "--precision", "fp32", "--ship"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--ship" in err[0] and "int8" in err[0]


@pytest.mark.slow
def test_the_shipped_file_equals_a_local_build_on_the_same_sample(shipped, faces, caplog):
    """build-engine --precision int8 (the local cache, 512 faces, seed 0) gives the engine that
    was shipped: the same outputs on real faces (identical with the onnxruntime that quantised
    the shipped file on the same kind of CPU; within 0.02 of its probabilities otherwise)."""
    entry = read_manifest(shipped).int8
    local = build_int8(shipped, need(FERPLUS / "train.npz"))
    assert read_onnx_metadata(local)["calibration_sha256"] == entry["calibration"]["sample_sha256"]
    man = read_manifest(shipped)
    args = (man.members, len(man.classes), man.input_size)
    a = OnnxRuntimeEngine(shipped / SHIPPED_FILE, *args).infer(faces)
    b = OnnxRuntimeEngine(local, *args).infer(faces)
    # Not bit-identical across CPUs even with the same onnxruntime: the fp32 export folds the
    # weights with the CPU's own SIMD (AVX2 vs AVX-512 differ by an ulp), which now and then flips
    # an int8 rounding (measured: 35 of 94 tensors off by one step, probabilities by 0.003).
    for name in ("mean_probs", "member_probs", "total", "aleatoric", "epistemic", "density"):
        assert np.abs(getattr(a, name) - getattr(b, name)).max() <= 0.02, name
    assert (a.mean_probs.argmax(1) == b.mean_probs.argmax(1)).mean() >= 0.99
    # a locally built file runs first (someone built it on purpose), and says so
    with caplog.at_level(logging.INFO, logger="uar_stream.engine"):
        assert create_engine(shipped, "auto", "cpu", "auto").onnx_path == local
    assert any("int8 built locally" in m for m in _engine_lines(caplog, logging.INFO))


def test_refitting_the_density_warns_that_the_shipped_int8_file_is_now_stale(shipped, caplog):
    """fit-density changes the model (its id): the shipped int8 file is stale from then on, and
    the fit says so with the rebuild command; the next load agrees (fp32, one WARNING)."""
    from uar_stream.evaluation.fit_density import fit_model_density

    with caplog.at_level(logging.WARNING, logger="uar_stream"):
        fit_model_density(shipped, FERPLUS / "train.npz", FERPLUS / "publictest.npz", limit=2000, seed=1)
    said = [r.getMessage() for r in caplog.records if r.name == "uar_stream.evaluation"]
    assert len(said) == 1 and "was quantised from the model before this fit" in said[0]
    assert "build-engine" in said[0] and "--ship" in said[0]
    assert find_int8(shipped).path is None


def test_refitting_without_a_shipped_int8_file_warns_nothing(shipped_src, tmp_path, caplog):
    from uar_stream.evaluation.fit_density import fit_model_density

    model = _copy(shipped_src, tmp_path / "plain", int8=False)
    with caplog.at_level(logging.WARNING, logger="uar_stream"):
        fit_model_density(model, FERPLUS / "train.npz", FERPLUS / "publictest.npz", limit=2000, seed=1)
    assert not [r for r in caplog.records if r.name == "uar_stream.evaluation"]
