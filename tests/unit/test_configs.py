"""The configs that ship (configs/*.yaml) and the built-in routing defaults fit the shipped model."""
import numpy as np
import pytest
import yaml

from uar_stream.config import AnalyzerConfig, load_config
from uar_stream.evaluation.calibrate import fit, load_faces
from uar_stream.evaluation.predict import Predictor
from uar_stream.model.store import model_id

from tests.support.paths import FERPLUS, ROOT, need

CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
SHIPPED = ROOT / "engines" / "default"


def test_configs_folder_is_not_empty():
    assert any(p.name == "default.yaml" for p in CONFIGS)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_config_loads(path):
    assert isinstance(load_config(path), AnalyzerConfig)


def test_configs_that_name_a_model_id_name_the_shipped_model():
    shipped = model_id(need(SHIPPED / "manifest.json").parent)
    for path in CONFIGS:
        cal = (yaml.safe_load(path.read_text()) or {}).get("calibration") or {}
        if "model_id" in cal:
            assert cal["model_id"] == shipped, (
                f"{path.name} was calibrated for model {cal['model_id']}, the shipped model is {shipped}: "
                "rerun `uar-stream calibrate` for it")
            assert load_config(path).model.path == "engines/default", path.name


@pytest.mark.slow
def test_default_thresholds_are_the_shipped_models_calibration():
    """The defaults are what `uar-stream calibrate` fits for the shipped model on FER+ PublicTest
    with its default targets (5% of clean faces rejected; ambiguous rate = the share of faces the
    annotators disagreed on). A retrained model without recalibrated defaults fails here."""
    faces, disagreed, _ = load_faces(need(FERPLUS / "publictest.npz"))
    s = Predictor(need(SHIPPED / "manifest.json").parent, None).predict(faces.images)
    routing = AnalyzerConfig().routing
    th = fit(s.epistemic.astype(np.float64), s.aleatoric.astype(np.float64), disagreed, id_reject=0.05,
             density=s.density.astype(np.float64), ood_gate=routing.ood_gate)
    # the defaults carry 4 decimals; engines (CPU or GPU) agree far closer than that
    assert th.ood_gate == routing.ood_gate
    assert th.tau_epistemic == pytest.approx(routing.tau_epistemic, abs=5e-4)
    assert th.tau_aleatoric == pytest.approx(routing.tau_aleatoric, abs=5e-4)
    assert th.tau_density == pytest.approx(routing.tau_density, abs=5e-4)
