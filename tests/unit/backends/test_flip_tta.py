"""engine.flip_tta: each face averaged with its mirror, on the shipped model's real onnxruntime
engine and real FER+ faces."""
import json
import shutil

import numpy as np
import pytest

from uar_stream.backends import create_engine
from uar_stream.config import load_config
from uar_stream.errors import ConfigError
from uar_stream.model.preprocess import prepare_batch
from uar_stream.model.store import MANIFEST
from uar_stream.model.uncertainty import decompose

from tests.support.paths import DEFAULT_MODEL, FERPLUS

FIELDS = ("mean_probs", "total", "aleatoric", "epistemic", "member_probs", "density")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """engines/default copied (its ONNX cache is written there, not into the checkout)."""
    if not (DEFAULT_MODEL / MANIFEST).is_file():
        pytest.skip(f"{DEFAULT_MODEL} not available")
    dst = tmp_path_factory.mktemp("flip") / "model"
    dst.mkdir()
    man = json.loads((DEFAULT_MODEL / MANIFEST).read_text())
    for name in [MANIFEST, *man["files"], *([man["density"]["file"]] if man.get("density") else [])]:
        shutil.copy2(DEFAULT_MODEL / name, dst / name)
    return dst


@pytest.fixture(scope="module")
def faces():
    path = FERPLUS / "publictest.npz"
    if not path.is_file():
        pytest.skip(f"{path} not available")
    return prepare_batch(np.load(path)["images"][:40])


@pytest.fixture(scope="module")
def engines(model_dir):
    return (create_engine(model_dir, "onnxruntime", "cpu", "fp32"),
            create_engine(model_dir, "onnxruntime", "cpu", "fp32", flip_tta=True))


def test_each_face_is_the_mean_of_itself_and_its_mirror(engines, faces):
    plain, flip = engines
    out, a, b = flip.infer(faces), plain.infer(faces), plain.infer(faces[..., ::-1].copy())
    members = (a.member_probs.astype(np.float64) + b.member_probs) / 2
    ref = decompose(members)
    np.testing.assert_allclose(out.member_probs, members, atol=1e-6)
    np.testing.assert_allclose(out.mean_probs, (a.mean_probs + b.mean_probs) / 2, atol=1e-6)
    for name in ("total", "aleatoric", "epistemic"):
        np.testing.assert_allclose(getattr(out, name), getattr(ref, name), atol=1e-5)
    np.testing.assert_allclose(out.density, (a.density + b.density) / 2, rtol=1e-5)
    # The mirror changes something: members read a real face and its mirror differently.
    assert np.abs(a.member_probs - b.member_probs).max() > 1e-3
    assert not np.allclose(out.epistemic, a.epistemic, atol=1e-4)
    assert flip.name == "onnxruntime+flip" and flip.members == plain.members
    assert flip.max_batch == plain.max_batch  # the inner engine's


def test_a_mirror_symmetric_face_reads_as_without_tta(engines, faces):
    plain, flip = engines
    sym = ((faces + faces[..., ::-1]) / 2).astype(np.float32)
    out, ref = flip.infer(sym), plain.infer(sym)
    for name in FIELDS:
        np.testing.assert_allclose(getattr(out, name), getattr(ref, name), atol=2e-5, err_msg=name)


def test_batches_above_max_batch_keep_their_rows(model_dir, engines, faces):
    small = create_engine(model_dir, "onnxruntime", "cpu", "fp32", max_batch=8, flip_tta=True)
    whole, split = engines[1].infer(faces[:13]), small.infer(faces[:13])  # 26 views in 4 calls
    np.testing.assert_allclose(split.member_probs, whole.member_probs, atol=1e-5)
    assert len(small.infer(faces[:0])) == 0


def test_config_key_is_a_checked_bool(tmp_path):
    assert load_config().engine.flip_tta is False
    cfg = tmp_path / "c.yaml"
    cfg.write_text("engine:\n  flip_tta: true\n")
    assert load_config(cfg).engine.flip_tta is True
    cfg.write_text("engine:\n  flip_tta: sometimes\n")
    with pytest.raises(ConfigError, match="engine.flip_tta"):
        load_config(cfg)


def test_the_analyzer_runs_flip_tta_from_its_config(model_dir, media):
    import cv2

    from uar_stream import Analyzer

    engine = {"backend": "onnxruntime", "precision": "fp32", "flip_tta": True}
    with Analyzer.from_config({"model": {"path": str(model_dir)}, "engine": engine}) as an:
        assert an.engine.name == "onnxruntime+flip"
        faces = an.analyze(cv2.imread(str(media / "faceapi_happy.jpg")))
    assert [f.label for f in faces] == ["happiness"]
