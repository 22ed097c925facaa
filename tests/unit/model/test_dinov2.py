"""The DINOv2 configuration: ViT members built from config, HF weights loading, training, export.

Skipped without the optional ``transformers`` (extra ``dinov2``). No pre-trained weights exist
here, so weights files are synthetic: random tensors in the facebook/dinov2-small key layout.
"""
import json
import logging
import pickle
import re

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from safetensors.torch import save_file  # noqa: E402
from transformers import Dinov2Config, Dinov2Model  # noqa: E402

from uar_stream.errors import ModelError  # noqa: E402
from uar_stream.model.backbones.dinov2 import (  # noqa: E402
    VIT_S14,
    DinoV2Arch,
    DinoV2Ensemble,
    DinoV2Member,
    init_member_from_backbone,
    load_backbone_weights,
)
from uar_stream.model.ensemble import load_ensemble  # noqa: E402
from uar_stream.model.fused_cnn import CnnArch, FusedCnn  # noqa: E402
from uar_stream.model.preprocess import prepare_batch  # noqa: E402
from uar_stream.model.store import MANIFEST, Manifest, write_member  # noqa: E402

TINY = DinoV2Arch(hidden_size=64, layers=2, heads=2, image_size=56)

#: transformers >= 5 attention names -> the names in facebook/dinov2-small's model.safetensors,
#: written out here independently of the code under test.
HUB = {".attention.q_proj.": ".attention.attention.query.", ".attention.k_proj.": ".attention.attention.key.",
       ".attention.v_proj.": ".attention.attention.value.", ".attention.o_proj.": ".attention.output.dense."}


def hub_layout_file(path, hidden=64, layers=2, heads=2, image_size=112, prefix="", extra=None, seed=0):
    """Write a random Dinov2Model's weights as a Hugging Face hub-layout safetensors file;
    return the model (built for ``image_size``, as the hub's is for 518)."""
    torch.manual_seed(seed)
    cfg = Dinov2Config(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                       patch_size=14, image_size=image_size)
    model = Dinov2Model(cfg).eval()
    with torch.no_grad():  # layer scale and the norms start at 1/0: make them count
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    state = {}
    for k, v in model.state_dict().items():
        for new, old in HUB.items():
            k = k.replace(new, old)
        state[prefix + k] = v.contiguous()
    state.update(extra or {})
    save_file(state, str(path))
    return model


def tiny_model_dir(path, members=2, seed=0):
    """A random TINY DINOv2 model directory in the shipped format (manifest + member files)."""
    from uar_stream.model.backbones.dinov2 import member_file_state
    from uar_stream.model.store import file_sha256

    torch.manual_seed(seed)
    path.mkdir(parents=True)
    files = [f"member_{m:02d}.safetensors" for m in range(members)]
    for name in files:
        write_member(path / name, member_file_state(DinoV2Member(TINY)))
    man = Manifest(members=members, files=files, arch=TINY.to_dict(), backbone="dinov2", temperature=1.3,
                   sha256={f: file_sha256(path / f) for f in files})
    (path / MANIFEST).write_text(man.to_json())
    return path


def faces(ferplus, n):
    d = np.load(ferplus / "publictest.npz")
    return d["images"][:n], d["votes"][:n]


def test_vit_s14_builds_from_config_and_runs_one_face():
    ens = DinoV2Ensemble(1, 8, VIT_S14).eval()
    bb = ens.nets[0].backbone
    assert (bb.config.hidden_size, bb.config.num_hidden_layers, bb.config.num_attention_heads,
            bb.config.patch_size) == (384, 12, 6, 14)
    assert bb.encoder.layer[0].mlp.fc1.weight.shape == (1536, 384)
    assert bb.embeddings.position_embeddings.shape == (1, 1 + 16 * 16, 384)
    n_backbone = sum(p.numel() for p in bb.parameters())
    assert 21.5e6 < n_backbone < 22.5e6  # ViT-S/14: ~22 M
    with torch.no_grad():
        out = ens(torch.randn(1, 1, 48, 48))
    assert out.shape == (1, 1, 8) and torch.isfinite(out).all()


def test_input_transform_undoes_fer_stats_and_applies_imagenet_stats(ferplus):
    images, _ = faces(ferplus, 3)
    member = DinoV2Member(TINY)
    px = member.pixels(torch.from_numpy(prepare_batch(images)))
    assert px.shape == (3, 3, 56, 56)
    raw = torch.nn.functional.interpolate(torch.from_numpy(images[:, None] / 255.0).float(), size=(56, 56),
                                          mode="bilinear", align_corners=False)
    for c, (m, s) in enumerate(zip((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), strict=True)):
        torch.testing.assert_close(px[:, c:c + 1], (raw - m) / s, atol=1e-5, rtol=1e-5)


def test_ensemble_members_are_independent_modules():
    torch.manual_seed(0)
    ens = DinoV2Ensemble(3, 8, TINY).eval()
    x = torch.randn(2, 1, 48, 48)
    with torch.no_grad():
        out = ens(x)
        assert out.shape == (2, 3, 8)
        for m, net in enumerate(ens.nets):
            torch.testing.assert_close(net(x), out[:, m])
        per_member = ens(torch.cat([x, torch.randn(2, 2, 48, 48)], dim=1))  # (B, M, H, W)
        torch.testing.assert_close(per_member[:, 0], out[:, 0])
    assert not torch.allclose(out[:, 0], out[:, 1])


@pytest.mark.parametrize("prefix", ["", "dinov2.", "model."])
def test_hub_layout_weights_load_and_match_transformers(tmp_path, prefix):
    path = tmp_path / "model.safetensors"
    extra = {"classifier.weight": torch.zeros(1000, 128)} if prefix == "dinov2." else None
    ref = hub_layout_file(path, image_size=112, prefix=prefix, extra=extra)
    state = load_backbone_weights(path, TINY)
    assert "encoder.layer.0.attention.attention.query.weight" in state
    assert state["embeddings.position_embeddings"].shape == (1, 1 + 4 * 4, 64)  # 8x8 grid -> 4x4
    member = DinoV2Member(TINY).eval()
    init_member_from_backbone(member, state)
    x = torch.randn(2, 1, 48, 48)
    with torch.no_grad():
        px = member.pixels(x)
        ours = member.backbone(pixel_values=px).last_hidden_state
        theirs = ref(pixel_values=px).last_hidden_state  # transformers interpolates at run time
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)


def test_real_dinov2_small_layout_is_accepted(tmp_path):
    """Every key and shape of facebook/dinov2-small's model.safetensors (written out by hand)."""
    d, shapes = 384, {"embeddings.cls_token": (1, 1, 384), "embeddings.mask_token": (1, 384),
                      "embeddings.position_embeddings": (1, 1370, 384),
                      "embeddings.patch_embeddings.projection.weight": (384, 3, 14, 14),
                      "embeddings.patch_embeddings.projection.bias": (384,),
                      "layernorm.weight": (384,), "layernorm.bias": (384,)}
    for i in range(12):
        p = f"encoder.layer.{i}."
        for n in ("query", "key", "value"):
            shapes[p + f"attention.attention.{n}.weight"] = (d, d)
            shapes[p + f"attention.attention.{n}.bias"] = (d,)
        shapes[p + "attention.output.dense.weight"], shapes[p + "attention.output.dense.bias"] = (d, d), (d,)
        shapes[p + "mlp.fc1.weight"], shapes[p + "mlp.fc1.bias"] = (4 * d, d), (4 * d,)
        shapes[p + "mlp.fc2.weight"], shapes[p + "mlp.fc2.bias"] = (d, 4 * d), (d,)
        for n in ("norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias",
                  "layer_scale1.lambda1", "layer_scale2.lambda1"):
            shapes[p + n] = (d,)
    path = tmp_path / "model.safetensors"
    save_file({k: torch.zeros(s, dtype=torch.float16) for k, s in shapes.items()}, str(path))
    state = load_backbone_weights(path, VIT_S14)
    assert set(state) == set(shapes) - {"embeddings.mask_token"}
    assert state["embeddings.position_embeddings"].shape == (1, 257, 384)
    assert state["layernorm.weight"].dtype == torch.float32


def test_wrong_weights_files_fail_with_one_clear_error(tmp_path):
    path = tmp_path / "model.safetensors"
    hub_layout_file(path, hidden=64)
    with pytest.raises(ModelError, match=r"model.safetensors: tensor .* has shape \(.*64.*\), .* needs"):
        load_backbone_weights(path, DinoV2Arch(hidden_size=96, layers=2, heads=2, image_size=56))
    with pytest.raises(ModelError, match="has 2 transformer layers, the DINOv2 config needs 12"):
        load_backbone_weights(path, VIT_S14)
    with pytest.raises(ModelError, match="not found"):
        load_backbone_weights(tmp_path / "nope.safetensors", TINY)

    model = Dinov2Model(Dinov2Config(hidden_size=64, num_hidden_layers=2, num_attention_heads=2))
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    with open(tmp_path / "weights.pt", "wb") as f:
        pickle.dump({"x": 1}, f)
    for name in ("pytorch_model.bin", "weights.pt"):
        with pytest.raises(ModelError, match="is a pickled PyTorch checkpoint .* only safetensors"):
            load_backbone_weights(tmp_path / name, TINY)
    (tmp_path / "junk.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(ModelError, match="not a valid safetensors file"):
        load_backbone_weights(tmp_path / "junk.safetensors", TINY)
    save_file({"foo.weight": torch.zeros(3)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ModelError, match=r"not a DINOv2 backbone .* \(missing"):
        load_backbone_weights(tmp_path / "other.safetensors", TINY)


def test_training_on_real_faces_writes_a_loadable_resumable_model(tmp_path, ferplus, caplog):
    from uar_stream.training.dinov2 import DinoV2TrainConfig, train_dinov2

    weights = tmp_path / "model.safetensors"
    hub_layout_file(weights, image_size=112)
    cfg = DinoV2TrainConfig(members=2, epochs=4, batch_size=8, lr=1e-3, layer_decay=0.9, limit=32,
                            weights=str(weights), arch=TINY, device="cpu")
    out, work = tmp_path / "model", tmp_path / "work"
    with caplog.at_level(logging.INFO, logger="uar_stream.train"):
        man = train_dinov2(ferplus / "train.npz", ferplus / "publictest.npz", out, cfg, work)
    epoch_line = r"member 0 epoch \d/4: train loss ([\d.]+)"
    losses = [float(m.group(1)) for m in re.finditer(epoch_line, caplog.text)]
    assert len(losses) == 4 and losses[-1] < losses[0], losses
    assert man.backbone == "dinov2" and man.training["pretrained"]["file"] == "model.safetensors"
    assert 0.25 <= man.temperature <= 4.0 and man.metrics["data"]["n"] == 512

    net, man2 = load_ensemble(out)
    assert isinstance(net, DinoV2Ensemble) and man2.members == 2
    images, _ = faces(ferplus, 5)
    with torch.no_grad():
        logits = net(torch.from_numpy(prepare_batch(images)))
    assert logits.shape == (5, 2, 8) and torch.isfinite(logits).all()

    # Resume: a member whose final weights are gone is rebuilt from its last checkpoint.
    (work / "member_01" / "final.safetensors").unlink()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="uar_stream.train"):
        train_dinov2(ferplus / "train.npz", None, tmp_path / "again", cfg, work)
    assert "member 0: already trained" in caplog.text and "member 1: resuming after epoch 4" in caplog.text
    again, _ = load_ensemble(tmp_path / "again")
    with torch.no_grad():
        torch.testing.assert_close(again(torch.from_numpy(prepare_batch(images))), logits, atol=1e-6, rtol=0)


def test_load_ensemble_dispatches_on_backbone(tmp_path):
    arch = CnnArch(stem=8, widths=(8, 16, 16), blocks=(1, 1, 1), dropout=0.0)
    d = tmp_path / "cnn"
    d.mkdir()
    write_member(d / "member_00.safetensors", {k: v for k, v in FusedCnn(1, 8, arch).state_dict().items()
                                               if not k.endswith("num_batches_tracked")})
    man = Manifest(members=1, files=["member_00.safetensors"], arch=arch.to_dict())
    (d / MANIFEST).write_text(man.to_json())
    net, man = load_ensemble(d)
    assert isinstance(net, FusedCnn) and man.backbone == "cnn"

    raw = json.loads((d / MANIFEST).read_text())
    raw["backbone"] = "dinov2"  # CNN weights under a dinov2 manifest: the arch check fails clearly
    (d / MANIFEST).write_text(json.dumps(raw))
    with pytest.raises(ModelError, match="bad 'arch' for backbone dinov2"):
        load_ensemble(d)
    raw["backbone"], raw["arch"] = "dinov2", TINY.to_dict()
    (d / MANIFEST).write_text(json.dumps(raw))
    with pytest.raises(ModelError, match="member_00.safetensors: tensors do not match"):
        load_ensemble(d)
    raw["backbone"] = "resnet"
    (d / MANIFEST).write_text(json.dumps(raw))
    with pytest.raises(ModelError, match="backbone 'resnet' is not known; allowed: cnn, dinov2"):
        load_ensemble(d)


def test_onnx_export_has_dynamic_batch_and_matches_torch(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from uar_stream.backends.graph import UncertaintyGraph

    torch.manual_seed(0)
    graph = UncertaintyGraph(DinoV2Ensemble(3, 8, TINY), temperature=1.5).eval()
    path = tmp_path / "dinov2.onnx"
    # The TorchScript-based exporter, as engines/export.py uses it (opset 17).
    torch.onnx.export(graph, (torch.randn(2, 1, 48, 48),), str(path), dynamo=False, opset_version=17,
                      input_names=["faces"], output_names=["mean_probs", "total", "aleatoric", "epistemic",
                                                           "member_probs"],
                      dynamic_axes={"faces": {0: "batch"}, "member_probs": {0: "batch"}})
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert isinstance(sess.get_inputs()[0].shape[0], str)  # symbolic batch dimension
    for b in (1, 5):
        x = torch.randn(b, 1, 48, 48)
        with torch.no_grad():
            ref = graph(x)
        got = sess.run(None, {"faces": x.numpy()})
        assert got[4].shape == (b, 3, 8)
        for r, g in zip(ref, got, strict=True):
            np.testing.assert_allclose(g, r.numpy(), atol=1e-4, rtol=0)


def test_cli_rejects_a_bad_image_size(tmp_path, capsys):
    from uar_stream.cli.main import main

    rc = main(["train", "--data", str(tmp_path / "x.npz"), "--out", str(tmp_path / "m"),
               "--backbone", "dinov2", "--image-size", "50"])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--image-size" in err and "multiple of patch_size 14" in err


def test_engines_run_a_dinov2_model_dir(tmp_path, ferplus):
    """The model directory alone selects DINOv2: torch and onnxruntime engines agree."""
    from uar_stream.backends import create_engine
    from uar_stream.model.uncertainty import decompose

    d = tiny_model_dir(tmp_path / "dinov2", members=2)
    images, _ = faces(ferplus, 6)
    x = prepare_batch(images)
    net, man = load_ensemble(d)
    with torch.no_grad():
        probs = torch.softmax(net(torch.from_numpy(x)) / man.temperature, dim=-1).numpy()
    ref = decompose(probs)
    for backend in ("torch", "onnxruntime"):
        out = create_engine(d, backend=backend, device="cpu").infer(x)
        assert out.member_probs.shape == (6, 2, 8)
        np.testing.assert_allclose(out.member_probs, probs, atol=1e-4, rtol=0)
        np.testing.assert_allclose(out.epistemic, ref.epistemic, atol=1e-4, rtol=0)


def test_example_config_selects_a_dinov2_model_dir():
    from uar_stream.config import load_config

    from tests.support.paths import ROOT

    cfg = load_config(ROOT / "configs" / "dinov2.yaml")
    assert cfg.model.path == "engines/dinov2"
