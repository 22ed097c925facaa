"""The feature-density score and the decomposition temperature inside the engine: on real FER+
faces, every CPU backend's ``density`` equals a direct numpy computation from the members'
features, the uncertainties are decomposed at the manifest's decomposition temperature while the
displayed probabilities use the calibration temperature, and ``fit-density`` writes a
hash-checked file that changes the model id."""
import json
import shutil

import numpy as np
import pytest
import torch

from uar_stream.backends import create_engine
from uar_stream.backends.export import check_onnx, ensure_onnx
from uar_stream.backends.graph import output_names
from uar_stream.errors import ModelError
from uar_stream.evaluation.fit_density import fit_model_density, member_features
from uar_stream.model.density import DENSITY_FILE, fit_density, load_density
from uar_stream.model.ensemble import load_ensemble
from uar_stream.model.preprocess import prepare_batch
from uar_stream.model.store import MANIFEST, model_id, read_manifest
from uar_stream.model.uncertainty import decompose

from tests.support.paths import DEFAULT_MODEL, FERPLUS, need


@pytest.fixture(scope="module")
def faces():
    with np.load(need(FERPLUS / "publictest.npz")) as d:
        return d["images"][:40]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A copy of the shipped members with a density fitted on 300 training faces (fit-density's
    own path), decomposed at T = 1."""
    need(DEFAULT_MODEL / MANIFEST)
    d = tmp_path_factory.mktemp("model")
    for f in DEFAULT_MODEL.iterdir():
        if f.is_file() and f.name != DENSITY_FILE:
            shutil.copy(f, d / f.name)
    man = json.loads((d / MANIFEST).read_text())
    man.pop("density", None)
    man.pop("decomposition_temperature", None)
    (d / MANIFEST).write_text(json.dumps(man))
    before = model_id(d)
    fit_model_density(d, need(FERPLUS / "train.npz"), FERPLUS / "publictest.npz", limit=300)
    return d, before


def test_fit_density_records_file_hash_and_changes_the_id(fitted):
    d, before = fitted
    man = read_manifest(d)
    assert man.density["file"] == DENSITY_FILE and len(man.density["sha256"]) == 64
    assert man.density["fit"]["faces"] == 300 and man.decomposition_temperature == 1.0
    assert model_id(d) != before
    dm = load_density(d / DENSITY_FILE, man.members, len(man.classes))
    assert dm.means.shape == (5, 8, dm.dim) and dm.precision.shape == (5, dm.dim, dm.dim)


@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
def test_every_backend_returns_the_density_of_a_direct_numpy_computation(fitted, faces, backend):
    d, _ = fitted
    man = read_manifest(d)
    ref = load_density(d / DENSITY_FILE, man.members, len(man.classes)).score(member_features(d, faces))
    out = create_engine(d, backend, "cpu").infer(prepare_batch(faces))
    assert out.density is not None and out.density.shape == (len(faces),)
    np.testing.assert_allclose(out.density, ref, rtol=2e-4)
    assert np.ptp(ref) > 0.1 * ref.mean()  # faces differ: a constant would not be a score


@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
def test_two_temperatures_in_the_graph(fitted, faces, backend):
    """mean_probs at the calibration temperature; member_probs and the uncertainties at the
    decomposition temperature (1.0), as uncertainty.decompose computes them."""
    d, _ = fitted
    man = read_manifest(d)
    assert man.temperature != 1.0
    net, _ = load_ensemble(d)
    with torch.no_grad():
        z = net(torch.from_numpy(prepare_batch(faces))).double()
    out = create_engine(d, backend, "cpu").infer(prepare_batch(faces))
    np.testing.assert_allclose(out.mean_probs, torch.softmax(z / man.temperature, -1).mean(1).numpy(),
                               atol=2e-5)
    np.testing.assert_allclose(out.member_probs, torch.softmax(z, -1).numpy(), atol=2e-5)
    ref = decompose(out.member_probs)
    for f in ("total", "aleatoric", "epistemic"):
        np.testing.assert_allclose(getattr(out, f), getattr(ref, f), atol=2e-5)
    # decompose's temperature re-tempers probabilities: at T_cal it is another split
    sharp = decompose(out.member_probs, man.temperature)
    np.testing.assert_allclose(sharp.mean_probs, out.mean_probs, atol=2e-5)
    assert np.abs(sharp.epistemic - ref.epistemic).max() > 1e-2


def test_onnx_export_has_the_density_output_and_empty_batches_keep_it(fitted):
    d, _ = fitted
    path = ensure_onnx(d)
    assert check_onnx(path, {}, has_density=True) is None
    assert "inputs" in check_onnx(path, {}, has_density=False)
    eng = create_engine(d, "onnxruntime", "cpu")
    assert eng.output_names == list(output_names(True))
    assert eng.infer(np.zeros((0, 1, 48, 48), np.float32)).density.shape == (0,)


def test_a_changed_density_file_is_refused(fitted, tmp_path):
    d, _ = fitted
    bad = tmp_path / "m"
    shutil.copytree(d, bad, ignore=shutil.ignore_patterns("onnx"))
    (bad / DENSITY_FILE).write_bytes((bad / DENSITY_FILE).read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(ModelError, match="density.safetensors: sha256 differs"):
        model_id(bad)


def test_fit_density_matches_the_gaussians_it_was_given():
    """Synthetic features from known class Gaussians: the fitted means and precision are close,
    and in-distribution scores sit near 1 while shifted features score far higher."""
    rng = np.random.default_rng(0)
    m, c, dim, n = 2, 3, 6, 6000
    mu = rng.normal(0, 3, (m, c, dim))
    a = rng.normal(size=(m, dim, dim))
    cov = a @ a.transpose(0, 2, 1) / dim + np.eye(dim)
    y = rng.integers(0, c, n)
    f = np.stack([mu[k][y] + rng.multivariate_normal(np.zeros(dim), cov[k], n) for k in range(m)], 1)
    dm = fit_density(f, y, c)
    np.testing.assert_allclose(dm.means, mu, atol=0.15)
    np.testing.assert_allclose(dm.precision, np.linalg.inv(cov), atol=0.1)
    s_in, s_out = dm.score(f[:500]), dm.score(f[:500] + 4.0)
    assert 0.5 < np.median(s_in) < 1.1 and np.median(s_out) > 3 * np.median(s_in)


def test_density_travels_on_the_flow_types():
    from uar_stream.flow import EnsembleOutput, FaceResult, Route

    def out(n, dens):
        z = np.zeros(n, np.float32)
        return EnsembleOutput(np.zeros((n, 8), np.float32), z, z, z, np.zeros((n, 5, 8), np.float32),
                              np.arange(n, dtype=np.float32) if dens else None)
    both = EnsembleOutput.concat([out(2, True), out(3, True)])
    assert both.density.tolist() == [0, 1, 0, 1, 2]
    assert EnsembleOutput.concat([out(2, True), out(3, False)]).density is None
    assert EnsembleOutput.empty(5, 8, density=True).density.shape == (0,)
    f = FaceResult((0, 0, 1, 1), np.zeros((6, 2)), 0.9, np.full(8, 0.125), "neutral", 0.125, 1.0, 0.01,
                   1.2, Route.OUT_OF_DISTRIBUTION, reason="density", density=3.14159)
    d = f.to_dict(probs=False)
    assert d["density"] == 3.1416 and d["reason"] == "density"
    assert "density" not in FaceResult(**{**f.__dict__, "density": None}).to_dict()
