"""The live recipe's pieces: live-footage augmentation, class reweighting, weight average,
safetensors checkpoints, config validation, and a mid-member resume on real faces."""
import dataclasses
import json
import logging

import numpy as np
import pytest
import torch

from uar_stream.errors import ConfigError
from uar_stream.model.preprocess import PIXEL_MEAN, PIXEL_STD
from uar_stream.training.augment import LiveConfig, live_augment
from uar_stream.training.checkpoint import pack, read_state, unpack, write_state
from uar_stream.training.losses import class_weights, face_weights, member_loss
from uar_stream.training.trainer import TrainConfig, WeightAverage, train_ensemble, use_bf16

ONLY = ("yaw", "pitch", "aspect", "lowres", "blur", "gamma", "lowlight", "uneven", "occlude", "jpeg")


def _faces(n=32, seed=0):
    # Smooth random images (a face-like low-frequency content) in normalised units.
    g = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.interpolate(torch.rand(n, 1, 6, 6, generator=g), size=(48, 48), mode="bicubic")
    return ((x.clamp(0, 1) - PIXEL_MEAN) / PIXEL_STD).float()


def _only(name: str) -> LiveConfig:
    """A config where only transform ``name`` fires, always."""
    off = {f.name: 0.0 for f in dataclasses.fields(LiveConfig) if f.name.endswith("_p")}
    return LiveConfig(**{**off, f"{name}_p": 1.0})


@pytest.mark.parametrize("name", ONLY)
def test_each_live_transform_changes_faces_and_keeps_range(name):
    x = _faces()
    y = live_augment(x, _only(name), torch.Generator().manual_seed(0), PIXEL_MEAN, PIXEL_STD)
    assert y.shape == x.shape and torch.isfinite(y).all()
    px = y * PIXEL_STD + PIXEL_MEAN
    assert px.min() >= -1e-5 and px.max() <= 1 + 1e-5
    assert (y - x).abs().mean() > 1e-3, name


def test_live_augment_is_seeded_and_strength_zero_is_identity():
    x = _faces()
    a = live_augment(x, LiveConfig(), torch.Generator().manual_seed(3), PIXEL_MEAN, PIXEL_STD)
    b = live_augment(x, LiveConfig(), torch.Generator().manual_seed(3), PIXEL_MEAN, PIXEL_STD)
    assert torch.equal(a, b)
    assert torch.equal(live_augment(x, LiveConfig(strength=0), torch.Generator(), PIXEL_MEAN, PIXEL_STD), x)
    weak = live_augment(x, LiveConfig(strength=0.3), torch.Generator().manual_seed(3), PIXEL_MEAN, PIXEL_STD)
    assert (weak - x).abs().mean() < (a - x).abs().mean()


@pytest.mark.parametrize("kw, msg", [
    (dict(live=LiveConfig(blur_p=1.5)), "train.live.blur_p: must be in [0, 1], got 1.5"),
    (dict(live=LiveConfig(gamma=(1.5, 0.5))), "train.live.gamma: must be a (low, high) pair"),
    (dict(live_strengths=()), "train.live_strengths: must be one or more values >= 0"),
    (dict(balance=(0.3, 2.0)), "train.balance: must be one or more values in [0, 1]"),
    (dict(ema_decay=1.0), "train.ema_decay: must be in [0, 1), got 1.0"),
    (dict(balance_cap=0.5), "train.balance_cap: must be >= 1, got 0.5"),
    (dict(bf16="yes"), "train.bf16: allowed: true, false, null (auto), got 'yes'"),
])
def test_recipe_config_errors_name_the_key(kw, msg):
    with pytest.raises(ConfigError) as e:
        TrainConfig(**kw).validate()
    assert msg in str(e.value) and "\n" not in str(e.value)


def test_members_cycle_through_their_recipe_variants():
    cfg = TrainConfig(live_strengths=(1.0, 0.5), balance=(0.3,))
    assert [cfg.member_recipe(m)["live_strength"] for m in range(3)] == [1.0, 0.5, 1.0]
    classic = TrainConfig.classic()
    assert classic.member_recipe(4) == {"live_strength": 0.0, "balance": 0.0} and classic.ema_decay == 0


def test_face_weights_favour_rare_votes_and_keep_mean_one():
    soft = np.array([[1, 0, 0], [1, 0, 0], [1, 0, 0], [0.5, 0.5, 0], [0, 0, 1]], np.float32)
    w = face_weights(soft, power=0.5, cap=10)
    assert abs(w.mean() - 1) < 1e-6 and w[4] > w[3] > w[0]
    assert np.allclose(face_weights(soft, power=0.0, cap=10), 1)
    assert class_weights(soft, power=1.0, cap=2.0).max() <= 2.0


def test_weighted_loss_keeps_targets_and_scale():
    logits, soft = torch.randn(6, 8), torch.softmax(torch.randn(6, 8), -1)
    hard = soft.argmax(-1)
    plain = member_loss(logits, soft, hard, "soft")
    assert torch.allclose(member_loss(logits, soft, hard, "soft", torch.full((6,), 3.0)), plain)
    w = torch.tensor([1.0, 0, 0, 0, 0, 0])
    assert torch.allclose(member_loss(logits, soft, hard, "soft", w),
                          member_loss(logits[:1], soft[:1], hard[:1], "soft"))


def test_weight_average_tracks_the_weights():
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    ema = WeightAverage(net, 0.5)
    with torch.no_grad():
        net[0].weight.add_(1.0)
    ema.update(net)  # warm-up decay at step 1: 2/11
    d = 2 / 11
    before = ema.module[0].weight.clone()
    assert torch.allclose(before, net[0].weight - (1 - d) * 1.0 * 0 - d * 1.0, atol=1e-6)
    st = ema.state_dict()
    other = WeightAverage(net, 0.5)
    other.load_state_dict(st)
    assert other.steps == 1 and torch.equal(other.module[0].weight, before)


def test_checkpoint_is_safetensors_and_round_trips_optimizer_and_schedule(tmp_path):
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=10)
    net(torch.randn(4, 3)).sum().backward()
    opt.step()
    sched.step()
    path = tmp_path / "c.safetensors"
    write_state(path, {"optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                       "generator": torch.Generator().get_state(), "epoch": 3, "none": None})
    assert path.read_bytes()[8:9] == b"{"  # a safetensors JSON header, not a pickle/zip
    st = read_state(path)
    assert st["epoch"] == 3 and st["none"] is None and st["scheduler"] == sched.state_dict()
    assert torch.equal(st["optimizer"]["state"][0]["momentum_buffer"],
                       opt.state_dict()["state"][0]["momentum_buffer"])
    opt.load_state_dict(st["optimizer"])
    with pytest.raises(TypeError, match="cannot store object"):
        pack({"x": object()})
    assert unpack(*pack({"a": [1, {"i": torch.ones(2)}]}))["a"][1]["i"].tolist() == [1.0, 1.0]


class _Stop(Exception):
    pass


@pytest.mark.slow
def test_live_recipe_resumes_mid_member_to_the_same_weights(ferplus, tmp_path, caplog, monkeypatch):
    import uar_stream.training.trainer as trainer

    cfg = TrainConfig(members=1, epochs=2, limit=256, ema_decay=0.9)
    data, test = ferplus / "train.npz", ferplus / "publictest.npz"
    train_ensemble(data, test, tmp_path / "a", cfg, tmp_path / "work_a")
    whole = (tmp_path / "a" / "member_00.safetensors").read_bytes()
    metrics = json.loads((tmp_path / "work_a" / "member_00" / "metrics.json").read_text())
    assert metrics["recipe"] == cfg.member_recipe(0) and len(metrics["history"]) == 2
    assert {"accuracy", "accuracy_flip_tta", "recall", "temperature"} <= set(metrics)

    # The same run killed after epoch 1's checkpoint, then rerun: it resumes after epoch 1
    # and lands on the same weights (model, momentum, schedule, weight average, draws).
    real_save = trainer.save

    def save_then_stop(*a, **kw):
        real_save(*a, **kw)
        raise _Stop

    monkeypatch.setattr(trainer, "save", save_then_stop)
    with pytest.raises(_Stop):
        train_ensemble(data, test, tmp_path / "b", cfg, tmp_path / "work_b")
    monkeypatch.setattr(trainer, "save", real_save)
    assert read_state(tmp_path / "work_b" / "member_00" / "checkpoint.safetensors")["epoch"] == 1
    with caplog.at_level(logging.INFO, logger="uar_stream.train"):
        train_ensemble(data, test, tmp_path / "b", cfg, tmp_path / "work_b")
    assert "member 0: resuming after epoch 1" in caplog.text
    assert (tmp_path / "b" / "member_00.safetensors").read_bytes() == whole
    history = json.loads((tmp_path / "work_b" / "member_00" / "metrics.json").read_text())["history"]
    assert [r["epoch"] for r in history] == [1, 2]

    with pytest.raises(ConfigError, match="was started with another config"):
        train_ensemble(data, None, tmp_path / "c", dataclasses.replace(cfg, ema_decay=0.5),
                       tmp_path / "work_b")


def test_cli_rejects_an_unknown_recipe(ferplus, tmp_path, capsys):
    from uar_stream.cli.main import main

    assert main(["train", "--data", str(ferplus / "train.npz"), "--out", str(tmp_path / "x"),
                 "--quick", "--recipe", "fancy"]) == 2
    err = capsys.readouterr().err
    assert "train --recipe: 'fancy' is not allowed; allowed: live, classic, wide, deep" in err


def test_wide_recipe_is_classic_on_wider_members():
    wide, classic = TrainConfig.for_recipe("wide", epochs=3), TrainConfig.classic(epochs=3)
    assert wide.arch.widths == (64, 128, 256) and wide.arch.stem == 48
    assert dataclasses.replace(wide, arch=classic.arch) == classic
    assert TrainConfig.for_recipe("wide", arch=classic.arch).arch == classic.arch  # kw wins


def test_deep_recipe_is_classic_on_two_blocks_per_stage():
    deep, classic = TrainConfig.for_recipe("deep", epochs=3), TrainConfig.classic(epochs=3)
    assert deep.arch.blocks == (2, 2, 2) and deep.arch.widths == classic.arch.widths
    assert dataclasses.replace(deep, arch=classic.arch) == classic


def test_cli_wide_recipe_writes_wide_members(ferplus, tmp_path):
    from uar_stream.cli.main import main

    out = tmp_path / "wide"
    assert main(["train", "--data", str(ferplus / "train.npz"), "--out", str(out),
                 "--quick", "--members", "1", "--recipe", "wide"]) == 0
    arch = json.loads((out / "manifest.json").read_text())["arch"]
    assert arch["widths"] == [64, 128, 256] and arch["stem"] == 48


def test_bf16_auto_follows_the_cpu_and_an_explicit_setting_wins(monkeypatch, tmp_path):
    import uar_stream.training.trainer as trainer

    fake = tmp_path / "cpuinfo"
    real_path = trainer.Path
    monkeypatch.setattr(trainer, "Path", lambda p: fake if p == "/proc/cpuinfo" else real_path(p))
    fake.write_text("flags\t\t: fpu sse avx2 avx512f avx512_vnni\n")
    assert use_bf16(None) is False and use_bf16(True) is True
    fake.write_text("flags\t\t: fpu sse avx2 avx512f avx512_bf16 amx_tile\n")
    assert use_bf16(None) is True and use_bf16(False) is False
    fake.unlink()  # no /proc/cpuinfo (not Linux): fp32
    assert use_bf16(None) is False
