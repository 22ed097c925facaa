import numpy as np

from uar_stream.flow import Route
from uar_stream.pipeline.routing import Router


def test_uar_routes_by_the_right_uncertainty():
    r = Router(tau_epistemic=0.1, tau_aleatoric=0.8)
    assert r.route(aleatoric=0.2, epistemic=0.05) is Route.CONFIDENT
    assert r.route(aleatoric=1.5, epistemic=0.05) is Route.AMBIGUOUS
    assert r.route(aleatoric=0.2, epistemic=0.3) is Route.OUT_OF_DISTRIBUTION
    # epistemic wins over aleatoric: an unfamiliar input is rejected even if also ambiguous
    assert r.route(aleatoric=1.5, epistemic=0.3) is Route.OUT_OF_DISTRIBUTION
    # thresholds are strict (>)
    assert r.route(aleatoric=0.8, epistemic=0.1) is Route.CONFIDENT


def test_route_batch_matches_scalar():
    r = Router(0.1, 0.8)
    a, e = np.array([0.1, 1.0, 0.1]), np.array([0.0, 0.0, 0.5])
    assert r.route_batch(a, e) == [Route.CONFIDENT, Route.AMBIGUOUS, Route.OUT_OF_DISTRIBUTION]


# --- the OOD gate choice (routing.ood_gate) ---------------------------------------------------

def _routers():
    return {g: Router(0.1, 0.8, g, tau_density=2.0) for g in ("mutual_information", "density", "either")}


def test_each_gate_reads_its_own_signal_and_names_it():
    r = _routers()
    # high mutual information, familiar features
    assert r["mutual_information"].decide(0.2, 0.3, 1.0) == (Route.OUT_OF_DISTRIBUTION, "epistemic")
    assert r["density"].decide(0.2, 0.3, 1.0) == (Route.CONFIDENT, None)
    assert r["either"].decide(0.2, 0.3, 1.0) == (Route.OUT_OF_DISTRIBUTION, "epistemic")
    # low mutual information, unfamiliar features
    assert r["mutual_information"].decide(0.2, 0.05, 5.0) == (Route.CONFIDENT, None)
    assert r["density"].decide(0.2, 0.05, 5.0) == (Route.OUT_OF_DISTRIBUTION, "density")
    assert r["either"].decide(0.2, 0.05, 5.0) == (Route.OUT_OF_DISTRIBUTION, "density")
    # both reject: mutual information is checked first and named
    assert r["either"].decide(1.5, 0.3, 5.0) == (Route.OUT_OF_DISTRIBUTION, "epistemic")
    # neither: aleatoric decides between ambiguous and confident, and thresholds are strict
    for g in r.values():
        assert g.decide(1.5, 0.05, 1.0) == (Route.AMBIGUOUS, None)
        assert g.route(0.8, 0.1, 2.0) is Route.CONFIDENT


def test_a_missing_density_never_rejects():
    r = _routers()
    assert r["density"].route(0.2, 0.3, None) is Route.CONFIDENT
    assert r["either"].route(0.2, 0.3, None) is Route.OUT_OF_DISTRIBUTION  # MI still gates


def test_route_batch_passes_density():
    r = _routers()["density"]
    a, e, d = np.array([0.1, 0.1]), np.array([0.5, 0.0]), np.array([1.0, 3.0])
    assert r.route_batch(a, e, d) == [Route.CONFIDENT, Route.OUT_OF_DISTRIBUTION]


def test_router_for_a_model_without_density():
    import pytest

    from uar_stream.config import RoutingConfig
    from uar_stream.pipeline.routing import router_for

    # a model without a density file gates on mutual information, whatever the gate says
    assert router_for(RoutingConfig(ood_gate="density"), False, "m").ood_gate == "mutual_information"
    assert router_for(RoutingConfig(ood_gate="either"), False, "m").ood_gate == "mutual_information"
    assert router_for(RoutingConfig(ood_gate="either"), True, "m").ood_gate == "either"
    with pytest.raises(ValueError, match="allowed: mutual_information, density, either"):
        Router(0.1, 0.8, "entropy")
