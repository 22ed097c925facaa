"""Metrics, retention and threshold fitting on small cases whose answers are known by hand."""
import numpy as np
import pytest
from scipy.stats import spearmanr

from uar_stream import metrics
from uar_stream.errors import ConfigError
from uar_stream.evaluation.calibrate import fit, tau_for_precision
from uar_stream.evaluation.evaluate import ambiguous_mask
from uar_stream.evaluation.retention import operate, retention_curve, threshold_for_rate
from uar_stream.labels import vote_entropy


def _probs(conf_pred):
    """(confidence, predicted class) pairs -> 2-class probability rows."""
    return np.array([[c, 1 - c] if k == 0 else [1 - c, c] for c, k in conf_pred])


def test_ece_separate_bins_by_hand():
    # confidences 0.9, 0.62, 0.82, 0.7 fall in 4 different 1/15-wide bins;
    # correct, wrong, correct, correct -> ECE = (0.1 + 0.62 + 0.18 + 0.3) / 4 = 0.3
    p = _probs([(0.9, 0), (0.62, 0), (0.82, 1), (0.7, 1)])
    y = np.array([0, 1, 1, 1])
    assert metrics.ece(p, y, bins=15) == pytest.approx(0.3)


def test_ece_shared_bin_averages_before_the_gap():
    # 0.91 (correct) and 0.89 (wrong) share bin (0.867, 0.933]: |0.5 - 0.9| * 2/3;
    # 0.7 (correct) alone: |1 - 0.7| * 1/3
    p = _probs([(0.91, 0), (0.89, 0), (0.7, 1)])
    y = np.array([0, 1, 1])
    assert metrics.ece(p, y, bins=15) == pytest.approx(0.4 * 2 / 3 + 0.3 / 3)
    r = metrics.reliability(p, y, bins=15)
    assert r.count.sum() == 3 and r.count[13] == 2
    assert r.accuracy[13] == pytest.approx(0.5) and r.confidence[13] == pytest.approx(0.9)
    # a perfectly calibrated set has ECE 0
    assert metrics.ece(_probs([(1.0, 0)] * 4), np.zeros(4, int)) == pytest.approx(0.0)


def test_auroc_toy_and_ties():
    # pairs (neg, pos): (0.1, 0.35) ok, (0.4, 0.35) wrong, (0.1, 0.8) ok, (0.4, 0.8) ok -> 3/4
    assert metrics.auroc([0.1, 0.4], [0.35, 0.8]) == pytest.approx(0.75)
    assert metrics.auroc([0.5, 0.5], [0.5, 0.5]) == pytest.approx(0.5)
    assert metrics.auroc([0.0, 0.1], [0.2, 0.3]) == pytest.approx(1.0)
    assert metrics.auroc([0.2, 0.3], [0.0, 0.1]) == pytest.approx(0.0)


def test_spearman_ci_is_spearman_with_a_seeded_bootstrap_interval():
    rng = np.random.default_rng(1)
    a = rng.normal(size=400)
    b = a + rng.normal(size=400)
    b[:50] = np.round(b[:50])  # some ties
    r = metrics.spearman_ci(a, b, n_resamples=300, seed=3)
    assert r["value"] == pytest.approx(spearmanr(a, b).statistic)
    assert r["ci_low"] < r["value"] < r["ci_high"]
    assert 0.02 < r["ci_high"] - r["ci_low"] < 0.3
    assert metrics.spearman_ci(a, b, n_resamples=300, seed=3) == r  # seeded
    mono = metrics.spearman_ci(a, a ** 3, n_resamples=100)
    assert mono["value"] == pytest.approx(1.0) and mono["ci_low"] == pytest.approx(1.0)


def test_threshold_hits_the_rate_and_its_edges():
    s = np.array([0.9, 0.1, 0.8, 0.7, 0.3])
    for rate, n_rejected in [(0.0, 0), (0.2, 1), (0.4, 2), (0.6, 3), (1.0, 5)]:
        assert (s > threshold_for_rate(s, rate)).sum() == n_rejected
    # ties at the threshold cannot be split: fewer are rejected, and the report says so
    tied = np.array([0.5, 0.5, 0.5, 0.1])
    assert operate(tied, np.array([0.5]), 0.5).ood_rejected == 0.0


def test_retention_toy_case_known_answer():
    # OOD: epistemic 0.9 0.8 0.7 0.1 -> at r = 0.5, tau_e = 0.7 rejects 0.9 and 0.8.
    # Ambiguous ID faces: epistemic 0.05 0.2 0.75 -> UAR keeps 2 of 3.
    # Total entropy: OOD 2.0 1.9 1.8 1.7 -> t = 1.8; ambiguous 1.85 1.95 0.5 -> keeps 1 of 3.
    ood = {"uar": np.array([0.9, 0.8, 0.7, 0.1]), "total": np.array([2.0, 1.9, 1.8, 1.7])}
    amb = {"uar": np.array([0.05, 0.2, 0.75]), "total": np.array([1.85, 1.95, 0.5])}
    row = retention_curve(ood, amb, np.array([0.5]))[0]
    assert row["uar"]["ood_rejected"] == row["total"]["ood_rejected"] == 0.5
    assert row["uar"]["kept_count"] == 2 and row["total"]["kept_count"] == 1
    assert row["uar"]["kept"] / row["total"]["kept"] == pytest.approx(2.0)


def test_ambiguous_mask_counts_all_ten_votes():
    votes = np.array([
        [4, 3, 3, 0, 0, 0, 0, 0, 0, 0],  # 40% -> ambiguous
        [5, 5, 0, 0, 0, 0, 0, 0, 0, 0],  # 50% -> not (< 50% required)
        [4, 0, 0, 0, 0, 0, 0, 0, 6, 0],  # 40% of all 10 votes (unknown has 6) -> ambiguous
        [9, 0, 0, 0, 0, 0, 0, 0, 0, 0],  # 9 votes, 100%
    ])
    np.testing.assert_array_equal(ambiguous_mask(votes), [True, False, True, False])
    assert vote_entropy(votes)[3] == pytest.approx(0.0)


def test_tau_for_precision_toy():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    positive = np.array([1, 1, 0, 1, 0, 0], bool)
    # flag top-k: precision 1, 1, 2/3, 3/4, 3/5, 1/2 -> the most faces with >= 0.75 is k = 4
    t, p, k = tau_for_precision(scores, positive, 0.75, min_flagged=1)
    assert (k, p) == (4, pytest.approx(0.75)) and t == pytest.approx(0.5)
    with pytest.raises(ValueError, match="best reachable precision"):
        tau_for_precision(scores, positive, 0.95, min_flagged=3)


def _synthetic(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    disagreed = rng.random(n) < 0.15
    aleatoric = rng.gamma(2.0, 0.2, n) + 0.6 * disagreed
    epistemic = rng.gamma(1.5, 0.02, n)
    return epistemic, aleatoric, disagreed


@pytest.mark.parametrize("id_reject, rate", [(0.05, 0.1), (0.01, 0.2), (0.2, 0.05)])
def test_fitted_thresholds_reproduce_rate_targets(id_reject, rate):
    e, a, d = _synthetic()
    th = fit(e, a, d, id_reject, ambiguous_rate=rate)
    routed_ood = e > th.tau_epistemic
    routed_amb = ~routed_ood & (a > th.tau_aleatoric)
    assert abs(routed_ood.mean() - id_reject) <= 1 / len(e)
    assert abs(routed_amb.mean() - rate) <= 1 / len(e)
    assert th.achieved["id_false_reject"] == pytest.approx(routed_ood.mean())
    assert th.achieved["ambiguous_rate"] == pytest.approx(routed_amb.mean())


def test_fitted_thresholds_reach_precision_target_and_default_rate():
    e, a, d = _synthetic()
    th = fit(e, a, d, 0.05, ambiguous_precision=0.7)
    flagged = (e <= th.tau_epistemic) & (a > th.tau_aleatoric)
    assert d[flagged].mean() >= 0.7
    assert th.achieved["ambiguous_precision"] == pytest.approx(d[flagged].mean())
    # one step lower would flag more faces but miss the target (the fit is the most permissive)
    lower = np.sort(a[(e <= th.tau_epistemic) & (a <= th.tau_aleatoric)])[-1]
    more = (e <= th.tau_epistemic) & (a >= lower)
    assert d[more].mean() < 0.7 or more.sum() == flagged.sum()
    default = fit(e, a, d, 0.05)
    assert abs(default.achieved["ambiguous_rate"] - d.mean()) <= 1 / len(e)
    with pytest.raises(ConfigError, match="ambiguous-precision"):
        fit(e, a, d, 0.05, ambiguous_precision=0.999)
