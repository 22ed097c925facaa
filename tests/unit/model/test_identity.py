"""One model id, from model/store.py, wherever a model is named; model directories found by
model/locate.py in the documented order."""
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from uar_stream.backends.export import artifact_key, onnx_path
from uar_stream.errors import ModelError
from uar_stream.evaluation.calibrate import calibrate
from uar_stream.evaluation.predict import Predictor
from uar_stream.model import locate
from uar_stream.model.locate import DEFAULT_MODEL, resolve_model_path
from uar_stream.model.store import MANIFEST, MODEL_ID_LENGTH, model_id, read_manifest

from tests.support.live import make_tiny_model


@pytest.fixture
def tiny(tmp_path):
    return make_tiny_model(tmp_path / "m", members=2)


def test_id_is_hex_of_the_documented_length_and_ignores_manifest_formatting(tiny):
    mid = model_id(tiny)
    assert re.fullmatch(f"[0-9a-f]{{{MODEL_ID_LENGTH}}}", mid)
    raw = json.loads((tiny / MANIFEST).read_text())
    # the same manifest, keys reversed (nested ones too) and written without indentation
    rev = {k: (dict(reversed(v.items())) if isinstance(v, dict) else v) for k, v in reversed(raw.items())}
    (tiny / MANIFEST).write_text(json.dumps(rev))
    assert model_id(tiny) == mid


def test_id_changes_with_any_manifest_field_or_weight(tiny, tmp_path):
    mid = model_id(tiny)
    man = json.loads((tiny / MANIFEST).read_text())
    man["temperature"] = 2.0
    (tiny / MANIFEST).write_text(json.dumps(man))
    assert model_id(tiny) != mid
    other = make_tiny_model(tmp_path / "other", members=2, seed=1)  # same manifest shape, new weights
    assert model_id(other) not in (mid, model_id(tiny))


def test_id_leaves_out_the_shipped_int8_entry_that_records_it(tiny):
    """The int8 engine is derived from the model and records the model's id: its entry must not
    feed that id (it could never match itself), and a malformed entry is one line naming the key."""
    mid = model_id(tiny)
    man = json.loads((tiny / MANIFEST).read_text())
    man["int8"] = {"file": "engine_int8.onnx", "sha256": "0" * 64, "model_id": mid, "graph_version": "3"}
    (tiny / MANIFEST).write_text(json.dumps(man))
    assert model_id(tiny) == mid and read_manifest(tiny).int8["model_id"] == mid
    for bad in ({"file": "engine_int8.onnx"}, {**man["int8"], "file": "../elsewhere.onnx"}, "x"):
        (tiny / MANIFEST).write_text(json.dumps({**man, "int8": bad}))
        with pytest.raises(ModelError) as e:
            read_manifest(tiny)
        assert "\n" not in str(e.value) and str(e.value).startswith(f"{tiny / MANIFEST}: 'int8' ")


def test_id_refuses_weights_the_manifest_does_not_vouch_for(tiny):
    with open(tiny / "member_01.safetensors", "r+b") as f:
        f.seek(200)
        f.write(b"\x00\x01\x02")
    with pytest.raises(ModelError, match="sha256 differs from the manifest"):
        model_id(tiny)
    # without a recorded hash the bytes on disk still decide the id
    man = json.loads((tiny / MANIFEST).read_text())
    del man["sha256"]["member_01.safetensors"]
    (tiny / MANIFEST).write_text(json.dumps(man))
    before = model_id(tiny)
    with open(tiny / "member_01.safetensors", "r+b") as f:
        f.seek(200)
        f.write(b"\x07\x07\x07")
    assert model_id(tiny) != before


def test_every_consumer_names_the_model_by_the_same_id(tiny, tmp_path):
    mid = model_id(tiny)
    assert artifact_key(tiny) == mid
    assert onnx_path(tiny).name == f"{mid}-fp32.onnx"
    pred = Predictor(tiny, tmp_path / "cache")
    assert pred.model_id == mid and pred.cache_dir.name == mid
    rng = np.random.default_rng(0)
    data = tmp_path / "faces.npz"
    np.savez(data, images=rng.integers(0, 256, (40, 48, 48), dtype=np.uint8))
    out = tmp_path / "cal.yaml"
    _, _, section = calibrate(data, out, tiny, None, 0.1, 0.2, None)
    assert section["model_id"] == mid
    assert yaml.safe_load(out.read_text())["calibration"]["model_id"] == mid


def test_paths_as_given_win(tiny, tmp_path, monkeypatch):
    assert resolve_model_path(tiny) == tiny  # absolute
    monkeypatch.chdir(tmp_path)
    assert resolve_model_path("m") == tiny.relative_to(tmp_path)  # relative to the working directory
    shutil.copytree(tiny, tmp_path / DEFAULT_MODEL)
    assert resolve_model_path(DEFAULT_MODEL) == Path(DEFAULT_MODEL)  # a local engines/default wins


def test_default_name_falls_back_to_the_installed_model_then_the_checkout(tiny, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no engines/ here
    checkout = tmp_path / "checkout"
    shutil.copytree(tiny, checkout / DEFAULT_MODEL)
    (checkout / "pyproject.toml").write_text("")
    monkeypatch.setattr(locate, "_PACKAGE_ROOT", checkout)
    shipped = tmp_path / "site" / "uar_stream" / "shipped" / "default"
    monkeypatch.setattr(locate, "shipped_model_dir", lambda: shipped if shipped.is_dir() else None)
    assert resolve_model_path(DEFAULT_MODEL) == checkout / DEFAULT_MODEL  # editable install
    shutil.copytree(tiny, shipped)
    assert resolve_model_path(DEFAULT_MODEL) == shipped  # the wheel's package data comes first
    assert resolve_model_path("./engines/default/") == shipped  # the same name, spelled differently
    # other relative names never take the shipped model
    with pytest.raises(ModelError, match="model directory not found: engines/ldl"):
        resolve_model_path("engines/ldl")


def test_a_missing_model_is_one_line_naming_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(locate, "_PACKAGE_ROOT", tmp_path / "nowhere")  # not a checkout
    monkeypatch.setattr(locate, "shipped_model_dir", lambda: None)
    with pytest.raises(ModelError) as e:
        resolve_model_path(DEFAULT_MODEL)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"model directory not found: {DEFAULT_MODEL} (looked in ")
    assert str(tmp_path / DEFAULT_MODEL) in msg and "shipped model (none)" in msg
    with pytest.raises(ModelError, match=f"model directory not found: {tmp_path / 'gone'}$"):
        resolve_model_path(tmp_path / "gone")

