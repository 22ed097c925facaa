"""Protocol v2: which corruption runs on which grid against which negatives, the validation
corruptions against the library, the "not a shift" flag on real faces, the gates as scores
(either = OR at one in-distribution quantile) and the default gate chosen on validation only."""
import cv2
import numpy as np
import pytest

from uar_stream.evaluation.corruptions import (
    CORRUPTIONS,
    VALIDATION,
    corrupt_faces,
    downscale,
    upscale,
)
from uar_stream.evaluation.gates import Ecdf, GateScorer, either_thresholds
from uar_stream.evaluation.predict import Scores
from uar_stream.evaluation.protocols import (
    NATIVE_GRID,
    negatives,
    on_native_grid,
    parse_set_name,
    set_name,
    set_names,
)
from uar_stream.evaluation.separation import Inputs, choose_gate, shift_table
from uar_stream.evaluation.sets import RESAMPLE, _build

from tests.support.paths import FERPLUS, need


@pytest.fixture(scope="module")
def faces():
    with np.load(need(FERPLUS / "publictest.npz")) as d:
        return d["images"][[0, 7, 100, 900, 2000, 3000]]


def test_the_protocol_split():
    pixel = {"gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "jpeg_compression", "pixelate"}
    assert NATIVE_GRID == pixel
    for c in CORRUPTIONS + VALIDATION:
        assert not on_native_grid(c, "paper") and negatives(c, "paper") == "clean"
        assert set_name(c, "paper") == c
        if c in pixel:
            assert on_native_grid(c, "native") and negatives(c, "native") == "clean"
            assert parse_set_name(set_name(c, "native")) == (c, True)
        else:  # blur, weather, geometric: at 224 and down, against resampled faces
            assert set_name(c, "native") == c and negatives(c, "native") == "resampled"
    names = set_names(CORRUPTIONS)
    assert len(names) == 15 + 5 and len(set(names)) == len(names)


def test_native_sets_are_built_on_the_48_grid(faces):
    native = _build(faces, ("pixelate@48", 5), 0)
    np.random.seed(0)
    # on the grid: pixelate at 48 px makes 12x12 blocks of 4x4 equal pixels
    assert (native[:, ::4, ::4] == native[:, 3::4, 3::4]).all()
    at224 = _build(faces, ("pixelate", 5), 0)
    resampled = _build(faces, (RESAMPLE, 0), 0)
    # at 224 and down, pixelate is almost only the round trip: the shift the issue measured as none
    assert np.abs(at224.astype(int) - resampled).mean() < np.abs(native.astype(int) - faces).mean() / 3
    np.testing.assert_array_equal(corrupt_faces(faces, "gaussian_noise", 3, native=True),
                                  _build(faces, ("gaussian_noise@48", 3), 0))


@pytest.fixture(scope="module")
def lib():
    return pytest.importorskip("imagecorruptions", reason="imagecorruptions-imaug is not installed")


@pytest.mark.parametrize("name", VALIDATION)
def test_validation_corruptions_match_the_library(lib, faces, name):
    from uar_stream.evaluation.corruptions import corrupt_face, face_seed
    for s in (1, 3, 4, 5):
        for i, face in enumerate(faces[:3]):
            seed = face_seed(0, name, i)
            np.random.seed(seed)
            rgb = lib.corrupt(np.stack([upscale(face)] * 3, axis=-1), severity=s, corruption_name=name)
            ref = downscale(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), face.shape[0])
            np.testing.assert_array_equal(corrupt_face(face, name, s, seed), ref, err_msg=f"{name} {s}")


def test_saturate_is_no_shift_of_a_gray_face(faces):
    from uar_stream.evaluation.corruptions import validation
    up = upscale(faces[0])
    for s in (1, 2, 3):  # saturation of a gray face is 0, and 0 * c stays 0
        np.testing.assert_array_equal(validation.saturate(up, s, 0), up)
    darker = validation.saturate(up, 5, 0).astype(float)  # a constant saturation of hue 0
    assert 0.8 < darker.mean() / up.mean() < 0.9


def _scores(model_engine, images):
    from uar_stream.model.preprocess import prepare_batch
    o = model_engine.infer(prepare_batch(images))
    return Scores(o.mean_probs, o.total, o.aleatoric, o.epistemic, o.density, o.member_probs)


def test_a_corruption_that_changes_nothing_is_flagged(default_model, ferplus):
    from uar_stream.backends import create_engine
    from uar_stream.labels import emotion_rows, majority_label
    with np.load(ferplus / "publictest.npz") as d:
        keep = emotion_rows(d["votes"])
        images, votes = d["images"][keep][:96], d["votes"][keep][:96]
    eng = create_engine(default_model, "onnxruntime", "cpu")
    clean = _scores(eng, images)
    noisy = _scores(eng, corrupt_faces(images, "gaussian_noise", 5, native=True))
    sets = {("gaussian_noise@48", 5): noisy, ("contrast", 5): clean, (RESAMPLE, 0): clean}
    inp = Inputs(clean, sets, majority_label(votes), np.zeros(len(images)), np.zeros(len(images), bool),
                 ("gaussian_noise", "contrast"), (), (5,), None)
    table = shift_table(inp, GateScorer(clean), "native", ("gaussian_noise", "contrast"))
    assert table["contrast"]["not_a_shift"] and table["contrast"]["accuracy_drop"]["5"] == 0.0
    assert not table["gaussian_noise"]["not_a_shift"] and table["gaussian_noise"]["grid"] == "48"
    assert table["contrast"]["negatives"] == "resampled" and "auroc_vs_clean" in table["contrast"]


def test_either_is_the_or_of_both_at_one_quantile():
    rng = np.random.default_rng(0)
    e, d = rng.gamma(2, 0.05, 4000), rng.gamma(3, 0.4, 4000) + 0.3 * rng.normal(size=4000)
    te, td, rate = either_thresholds(e, d, 0.05)
    assert abs(rate - 0.05) < 0.002
    assert abs(((e > te) | (d > td)).mean() - 0.05) < 0.002
    assert abs((e > te).mean() - (d > td).mean()) < 0.002  # the same quantile for each signal
    # as one score: max of the two CDFs rejects exactly the OR
    clean = Scores(np.zeros((4000, 8)), e, e, e, d)
    gs = GateScorer(clean)
    s = gs.score(clean, "either")
    t = np.sort(s)[::-1][int(round(0.05 * 4000))]
    assert abs((s > t).mean() - 0.05) < 0.002
    f = Ecdf(np.array([1.0, 2.0, 3.0]))
    assert list(f(np.array([0.5, 2.0, 3.0, 5.0]))) == [0.0, 2 / 3, 1.0, 2.0]  # keeps ranking beyond


def test_the_default_gate_is_chosen_on_validation_only():
    def gate(val_auroc, rho, test_auroc):
        return {"auroc_val_mean": {"5": val_auroc}, "spearman_disagreement": {"value": rho},
                "auroc_mean": {"native": {"5": test_auroc}}, "retention_val": {"ratio": 1.0}}
    gates = {"mutual_information": gate(0.70, 0.45, 0.99), "density": gate(0.80, 0.05, 0.60),
             "either": gate(0.85, 0.20, 0.61)}
    assert choose_gate(gates, "5") == "either"  # the test AUROC plays no part
    gates["either"]["spearman_disagreement"]["value"] = 0.30  # no longer separate from ambiguity
    assert choose_gate(gates, "5") == "density"
