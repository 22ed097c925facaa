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
