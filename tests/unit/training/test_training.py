"""Training runs for real on FER+ (a small subset): the CLI path, resume, the LDL shape."""

import pytest

from uar_stream.cli.main import main
from uar_stream.datasets.ferplus import calibration_split, image_hashes, load_npz, training_faces
from uar_stream.model.store import load_fused
from uar_stream.training.augment import AugmentConfig, augment

pytestmark = pytest.mark.slow


def test_quick_train_writes_a_loadable_ensemble_and_resumes(ferplus, tmp_path, capsys):
    out = tmp_path / "model"
    args = ["train", "--data", str(ferplus / "train.npz"), "--test", str(ferplus / "publictest.npz"),
            "--out", str(out), "--quick", "--members", "2"]
    assert main(args) == 0
    fused, man = load_fused(out)
    assert man.members == 2 and fused.members == 2
    assert set(man.metrics["ensemble"]) >= {"accuracy", "ece", "spearman_aleatoric_disagreement"}
    assert len(man.metrics["members"]) == 2
    assert man.training["data"]["dropped_leakage"] > 0
    assert 0.25 <= man.temperature <= 4.0
    # A rerun resumes from the finished members instead of training again.
    first = (out / "member_00.safetensors").read_bytes()
    assert main(args) == 0
    assert (out / "member_00.safetensors").read_bytes() == first


def test_ldl_baseline_trains_one_member(ferplus, tmp_path):
    out = tmp_path / "ldl"
    assert main(["train", "--data", str(ferplus / "train.npz"), "--out", str(out), "--quick",
                 "--members", "1", "--loss", "soft", "--seed", "100"]) == 0
    fused, man = load_fused(out)
    assert man.members == 1 and man.training["loss"] == "soft"


def test_bad_loss_is_a_config_error(ferplus, tmp_path, capsys):
    assert main(["train", "--data", str(ferplus / "train.npz"), "--out", str(tmp_path / "x"),
                 "--quick", "--loss", "focal"]) == 2
    assert "train.loss: 'focal' is not allowed; allowed: soft, majority" in capsys.readouterr().err


def test_leakage_removal_and_calibration_split(ferplus):
    train, test = load_npz(ferplus / "train.npz"), load_npz(ferplus / "publictest.npz")
    faces, stats = training_faces(train, test)
    held = set(image_hashes(test.images))
    assert not any(h in held for h in image_hashes(faces.images))
    assert (faces.votes.argmax(1) < 8).all()
    assert stats["kept"] == len(faces) < len(train)
    fit, cal = calibration_split(faces, 0.05, seed=0)
    assert len(fit) + len(cal) == len(faces)
    assert not set(image_hashes(fit.images)) & set(image_hashes(cal.images))
    assert 0.04 < len(cal) / len(faces) < 0.06


def test_augment_keeps_shape_and_changes_pixels():
    import torch

    x = torch.randn(16, 1, 48, 48)
    g = torch.Generator().manual_seed(0)
    y = augment(x, AugmentConfig(), g)
    assert y.shape == x.shape and torch.isfinite(y).all()
    assert (y - x).abs().mean() > 0.05
    assert torch.equal(augment(x, AugmentConfig(), torch.Generator().manual_seed(1)),
                       augment(x, AugmentConfig(), torch.Generator().manual_seed(1)))
