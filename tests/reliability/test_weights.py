"""Model files that are corrupt, truncated, tampered, wrong-shaped or pickled, and broken
manifests: `uar-stream run --model DIR` exits 2 with one line naming the file, and nothing is
ever unpickled (a pickle whose loading would create a marker file leaves no marker)."""
from __future__ import annotations

import json
import pickle
import shutil
import zipfile

import pytest
from safetensors.numpy import load_file, save_file

from uar_stream.model.store import MANIFEST, file_sha256

from tests.reliability.support import check_answer, cli

MEMBER = "member_00.safetensors"


class _Payload:
    """Unpickling this creates the marker file: proof that something was unpickled."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _manifest(d):
    return json.loads((d / MANIFEST).read_text())


def _rehash(d, name=MEMBER):
    """Make the manifest agree with the file (a tamperer who also edits the manifest)."""
    m = _manifest(d)
    m["sha256"][name] = file_sha256(d / name)
    (d / MANIFEST).write_text(json.dumps(m))


def _flip(d):
    data = bytearray((d / MEMBER).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (d / MEMBER).write_bytes(bytes(data))


def _truncate(d):
    (d / MEMBER).write_bytes((d / MEMBER).read_bytes()[:5000])


def _garbage_rehashed(d):
    (d / MEMBER).write_bytes(b"\x00garbage" * 100)
    _rehash(d)


def _pickle_as_safetensors(d):
    (d / MEMBER).write_bytes(pickle.dumps({"w": _Payload(d / "UNPICKLED")}))
    _rehash(d)


def _torch_zip_pickle(d):
    """A torch.save-style zip with a pickle inside, listed in the manifest as a .pt file."""
    with zipfile.ZipFile(d / "member_00.pt", "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps(_Payload(d / "UNPICKLED")))
    m = _manifest(d)
    m["files"][0] = "member_00.pt"
    m["sha256"] = {("member_00.pt" if k == MEMBER else k): v for k, v in m["sha256"].items()}
    (d / MANIFEST).write_text(json.dumps(m))
    _rehash(d, "member_00.pt")


def _reshaped(d):
    state = load_file(str(d / MEMBER))
    k = next(k for k, v in state.items() if v.ndim == 4 and v.shape[2] > 1)  # a 3x3 conv
    state[k] = state[k][:, :, :1, :1].copy()
    save_file(state, str(d / MEMBER))
    _rehash(d)


def _missing_tensor(d):
    state = load_file(str(d / MEMBER))
    state.pop(sorted(state)[0])
    save_file(state, str(d / MEMBER))
    _rehash(d)


def _edit(**changes):
    def edit(d):
        m = _manifest(d)
        m.update(changes)
        (d / MANIFEST).write_text(json.dumps(m))
    return edit


CASES = [  # (case, how the model dir is broken, message regex)
    ("weights: one byte flipped", _flip, r"member_00\.safetensors: sha256 differs from the manifest"),
    ("weights: truncated", _truncate, r"member_00\.safetensors: sha256 differs from the manifest"),
    ("weights: garbage with a matching hash", _garbage_rehashed,
     r"member_00\.safetensors: not a valid safetensors file"),
    ("weights: a pickle named .safetensors", _pickle_as_safetensors,
     r"member_00\.safetensors: not a valid safetensors file"),
    ("weights: torch zip pickle (.pt) in the manifest", _torch_zip_pickle,
     r"member_00\.pt: not a valid safetensors file"),
    ("weights: wrong-shaped tensor", _reshaped, r"member_00\.safetensors: tensor .* has shape"),
    ("weights: a tensor missing", _missing_tensor, r"member_00\.safetensors: tensors do not match"),
    ("weights: file missing", lambda d: (d / MEMBER).unlink(), r"weights file not found: .*member_00"),
    ("manifest: missing", lambda d: (d / MANIFEST).unlink(), r"manifest\.json: missing"),
    ("manifest: not JSON", lambda d: (d / MANIFEST).write_text("{nope"), r"manifest\.json: not valid JSON"),
    ("manifest: members disagree with files", _edit(members=3), r"'members' is 3 but 2 weight files"),
    ("manifest: unknown format", _edit(format="other/9"), r"manifest\.json: format is 'other/9'"),
    ("manifest: one class", _edit(classes=["neutral"]), r"'classes' must list at least 2 classes"),
]


@pytest.mark.parametrize("case,breaks,message", CASES, ids=[c[0] for c in CASES])
def test_broken_model_is_refused_and_never_unpickled(tmp_path, media, tiny_model, case, breaks, message):
    d = tmp_path / "model"
    shutil.copytree(tiny_model, d)
    breaks(d)
    ev = tmp_path / "e.jsonl"
    ans = cli(["run", "--model", str(d), "--source", str(media / "faceapi_happy.jpg"), "--events", str(ev)])
    check_answer(case, ans, 2, message)
    assert not (d / "UNPICKLED").exists()  # nothing was unpickled
    assert not ev.exists()


@pytest.mark.parametrize("case,path,message", [
    ("model: directory missing", "nope", r"model directory not found|not found"),
    ("model: path is a file", "file", r"model directory not found|manifest\.json: missing|not a directory"),
], ids=["dir missing", "path is a file"])
def test_model_path(tmp_path, media, case, path, message):
    target = tmp_path / path
    if path == "file":
        target.write_text("x")
    ans = cli(["run", "--model", str(target), "--source", str(media / "faceapi_happy.jpg")])
    check_answer(case, ans, 2, message)


def test_garbage_engine_cache_is_rebuilt_not_trusted(tmp_path, media, tiny_model):
    d = tmp_path / "model"
    shutil.copytree(tiny_model, d)
    for f in (d / "onnx").glob("*.onnx"):
        f.write_bytes(b"not onnx")
    ans = cli(["run", "--model", str(d), "--source", str(media / "faceapi_happy.jpg"),
               "--backend", "onnxruntime"])
    check_answer("engine cache: garbage ONNX file (rebuilt)", ans, 0, None)
    assert all(f.stat().st_size > 1000 for f in (d / "onnx").glob("*.onnx"))
