import pytest
import yaml

from uar_stream.config import AnalyzerConfig, load_config
from uar_stream.errors import ConfigError

from tests.support.paths import ROOT


def test_default_yaml_lists_every_key_with_the_code_defaults():
    data = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    assert data == AnalyzerConfig().to_dict()
    assert load_config(ROOT / "configs" / "default.yaml") == AnalyzerConfig()


@pytest.mark.parametrize("data, match", [
    ({"engine": {"backend": "cuda9"}},
     r"engine\.backend: 'cuda9' is not allowed; allowed: auto, onnxruntime"),
    ({"detector": {"model": "huge"}}, r"detector\.model: 'huge' is not allowed; allowed: full, short"),
    ({"routing": {"tau_epistemic": -1}}, r"routing\.tau_epistemic: -1(\.0)? is out of range"),
    ({"routing": {"tau_aleatoric": "high"}}, r"routing\.tau_aleatoric: 'high' is not a number"),
    ({"routing": {"tau": 1}},
     r"routing\.tau: unknown key; allowed keys: ood_gate, tau_epistemic, tau_aleatoric, tau_density"),
    ({"rooting": {}}, r"rooting: unknown key; allowed keys: model, detector"),
    ({"overlay": {"enabled": "yes"}}, r"overlay\.enabled: 'yes' is not allowed; allowed: true, false"),
    ({"overlay": {"color_ambiguous": [0, 300, 0]}}, r"overlay\.color_ambiguous"),
    ({"events": {"faces": "sometimes"}}, r"events\.faces: 'sometimes' is not allowed; allowed: every_frame"),
    ({"detector": {"max_faces": 2.5}}, r"detector\.max_faces: 2\.5 must be a whole number"),
])
def test_bad_values_name_the_key_and_the_allowed_values(data, match):
    with pytest.raises(ConfigError, match=match):
        load_config(data)


def test_overrides_win_over_file(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("routing:\n  tau_epistemic: 0.2\n")
    cfg = load_config(p, {"routing.tau_epistemic": 0.3, "routing.tau_aleatoric": None})
    assert cfg.routing.tau_epistemic == 0.3
    assert cfg.routing.tau_aleatoric == AnalyzerConfig().routing.tau_aleatoric


def test_bad_yaml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    p = tmp_path / "bad.yaml"
    p.write_text("routing: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)


def test_digest_changes_with_config():
    assert load_config({}).digest() != load_config({"routing": {"tau_epistemic": 0.5}}).digest()
