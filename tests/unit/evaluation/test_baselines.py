import numpy as np

from uar_stream.evaluation.baselines import SingleUncertaintyRouter
from uar_stream.flow import Route


def test_single_uncertainty_router_rejects_ambiguous_and_novel_alike():
    s = SingleUncertaintyRouter(tau=1.0)
    assert s.route(1.5) is Route.OUT_OF_DISTRIBUTION
    assert s.route(0.5) is Route.CONFIDENT
    np.testing.assert_array_equal(s.rejects(np.array([0.5, 1.5])), [False, True])
    assert Route("ambiguous") is Route.AMBIGUOUS
