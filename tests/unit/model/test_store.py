import json
import pickle
import shutil

import pytest
import torch

from uar_stream.errors import ModelError
from uar_stream.model.fused_cnn import CnnArch, FusedCnn, join_members, split_members
from uar_stream.model.store import MANIFEST, load_fused

from tests.support.live import make_tiny_model as make_model_dir  # the same small architecture as SMALL

SMALL = CnnArch(stem=8, widths=(8, 16, 16), blocks=(1, 1, 1), dropout=0.0)


def test_fused_module_equals_members_run_one_by_one(tmp_path):
    d = make_model_dir(tmp_path / "m", members=3)
    fused, man = load_fused(d)
    x = torch.randn(4, 1, 48, 48)
    with torch.no_grad():
        out = fused(x)
        assert out.shape == (4, 3, 8)
        for m, state in enumerate(split_members(fused.state_dict(), 3)):
            single = FusedCnn(1, 8, SMALL)
            single.load_state_dict(state, strict=False)
            single.eval()
            torch.testing.assert_close(single(x)[:, 0], out[:, m], atol=1e-5, rtol=1e-4)


def test_split_join_roundtrip():
    net = FusedCnn(2, 8, SMALL)
    parts = split_members(net.state_dict(), 2)
    joined = join_members(parts)
    for k, v in joined.items():
        torch.testing.assert_close(v, net.state_dict()[k])


def test_manifest_member_count_mismatch(tmp_path):
    d = make_model_dir(tmp_path / "m", members=2)
    man = json.loads((d / MANIFEST).read_text())
    man["members"] = 3
    (d / MANIFEST).write_text(json.dumps(man))
    with pytest.raises(ModelError, match="'members' is 3 but 2 weight files"):
        load_fused(d)


def test_wrong_shaped_tensors_fail_clearly(tmp_path):
    d = make_model_dir(tmp_path / "m", members=2)
    man = json.loads((d / MANIFEST).read_text())
    man["arch"]["widths"] = [8, 16, 32]  # the manifest now claims a wider last stage
    (d / MANIFEST).write_text(json.dumps(man))
    with pytest.raises(ModelError, match=r"member_00.safetensors: tensor .* has shape"):
        load_fused(d)


def test_pickled_weights_are_refused(tmp_path):
    d = make_model_dir(tmp_path / "m", members=1)
    target = d / "member_00.safetensors"
    state = FusedCnn(1, 8, SMALL).state_dict()
    with open(target, "wb") as f:
        pickle.dump(state, f)  # a pickle where safetensors belong: never unpickled
    with pytest.raises(ModelError, match="sha256 differs"):
        load_fused(d)
    with pytest.raises(ModelError, match="not a valid safetensors file"):
        load_fused(d, verify_hashes=False)


def test_corrupt_and_missing_files(tmp_path):
    d = make_model_dir(tmp_path / "m", members=2)
    with pytest.raises(ModelError, match="model directory not found"):
        load_fused(tmp_path / "nope")
    (d / "member_01.safetensors").unlink()
    with pytest.raises(ModelError, match="weights file not found"):
        load_fused(d)
    (d / MANIFEST).write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        load_fused(d)


def test_shipped_manifest_matches_its_tensors(default_model, tmp_path):
    fused, man = load_fused(default_model)
    assert man.members == len(man.files) >= 2
    assert man.classes[:2] == ["neutral", "happiness"] and len(man.classes) == 8
    size = sum(p.stat().st_size for p in default_model.iterdir())
    assert size < 25 * 2**20
    assert man.metrics["ensemble"]["accuracy"] > 0.5
    copy = shutil.copytree(default_model, tmp_path / "copy")
    with open(copy / man.files[0], "r+b") as f:  # flip bytes in the middle of the file
        f.seek(2000)
        f.write(b"\x00\x01\x02\x03")
    with pytest.raises(ModelError, match="sha256 differs"):
        load_fused(copy)
