import math

import numpy as np
import pytest

from uar_stream.model.uncertainty import decompose, entropy, normalise


def test_identical_members_have_zero_epistemic():
    p = np.array([[0.7, 0.2, 0.1]])
    d = decompose(np.repeat(p[:, None], 5, axis=1))
    assert d.epistemic[0] == pytest.approx(0.0, abs=1e-12)
    assert d.aleatoric[0] == pytest.approx(entropy(p)[0])
    assert d.total[0] == pytest.approx(d.aleatoric[0])


def test_one_hot_disagreeing_members_are_all_epistemic():
    m = 4
    p = np.eye(m)[None]  # member i is certain of class i
    d = decompose(p)
    assert d.aleatoric[0] == pytest.approx(0.0, abs=1e-9)
    assert d.epistemic[0] == pytest.approx(math.log(m))
    assert d.total[0] == pytest.approx(math.log(m))


def test_uniform_members_are_all_aleatoric():
    p = np.full((1, 3, 8), 1 / 8)
    d = decompose(p)
    assert d.aleatoric[0] == pytest.approx(math.log(8))
    assert d.epistemic[0] == pytest.approx(0.0, abs=1e-12)
    assert normalise(d.total[0], 8) == pytest.approx(1.0)


def test_hand_computed_mixture():
    # two members: [1, 0] and [0.5, 0.5] -> mean [0.75, 0.25]
    p = np.array([[[1.0, 0.0], [0.5, 0.5]]])
    d = decompose(p)
    total = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    alea = (0.0 + math.log(2)) / 2
    assert d.total[0] == pytest.approx(total)
    assert d.aleatoric[0] == pytest.approx(alea)
    assert d.epistemic[0] == pytest.approx(total - alea)
    np.testing.assert_allclose(d.mean_probs[0], [0.75, 0.25])


def test_total_is_sum_and_epistemic_nonnegative_on_random():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(8) * 0.3, size=(200, 5))
    d = decompose(p)
    assert (d.epistemic >= 0).all()
    np.testing.assert_allclose(d.aleatoric + d.epistemic, d.total, atol=1e-12)


def test_rejects_bad_shape():
    with pytest.raises(ValueError):
        decompose(np.ones((3, 8)))
