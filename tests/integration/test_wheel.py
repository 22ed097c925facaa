"""A wheel carries its model: built from the source, installed into a fresh venv outside the
checkout, `uar-stream run` works with the shipped model and no checkout to fall back on.

The wheel is built from a copy of the source tree, so the build's own output (build/,
*.egg-info) never lands in the checkout. The fresh venv takes its dependencies from the running
interpreter's site-packages through a .pth file; that file does not run the .pth files there,
so the checkout's editable uar_stream stays out of reach (asserted).
"""
import fnmatch
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from uar_stream.model.store import model_id

from tests.support.paths import MEDIA, ROOT, need

pytestmark = pytest.mark.slow

# pyproject's package-data for the model
SHIPPED_GLOBS = ("manifest.json", "*.safetensors", "*.md", "engine_int8.onnx")
# the proposers' weights (MTCNN: accurate's; YuNet: accurate and auto's) and licences, package data
PROPOSER_FILES = tuple(f"{d}/{n}" for d, w in (("mtcnn_weights", "mtcnn.safetensors"),
                                              ("yunet_weights", "yunet_n_dynamic.onnx"))
                       for n in (w, f"{w}.sha256", "LICENSE.md", "NOTICE.md"))


def _sh(*args, cwd=None, env=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _build_wheel(tmp: Path) -> Path:
    src = _mkdir(tmp / "src")
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    shutil.copytree(ROOT / "uar_stream", src / "uar_stream", ignore=skip)
    # all of engines/, engine caches and the LDL baseline included: the wheel must leave them out
    shutil.copytree(ROOT / "engines", src / "engines", ignore=skip)
    r = _sh(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp / "dist", src)
    assert r.returncode == 0, r.stdout + r.stderr
    (wheel,) = (tmp / "dist").glob("uar_stream-*.whl")
    return wheel


def _mkdir(p: Path) -> Path:
    p.mkdir(parents=True)
    return p


def _venv_with_wheel(tmp: Path, wheel: Path) -> tuple[Path, dict]:
    venv = tmp / "venv"
    r = _sh(sys.executable, "-m", "venv", "--without-pip", venv)
    assert r.returncode == 0, r.stderr
    py = venv / "bin" / "python"
    # pip runs the venv's interpreter (--python) before the .pth exists: nothing of ours is visible
    r = _sh(sys.executable, "-m", "pip", "--python", py, "install", "--no-deps", "--no-index", "-q", wheel)
    assert r.returncode == 0, r.stdout + r.stderr
    site = Path(_sh(py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip())
    deps = {sysconfig.get_paths()[k] for k in ("purelib", "platlib")}
    deps |= {p for p in sys.path if p.endswith(("site-packages", "dist-packages"))}
    (site / "_uar_test_deps.pth").write_text("\n".join(sorted(deps)) + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", XDG_CACHE_HOME=str(tmp / "cache"),
               PYTHONUNBUFFERED="1", GLOG_minloglevel="2")
    return venv, env


def _events(path: Path) -> list[dict]:
    events = [json.loads(line) for line in path.read_text().splitlines()]
    assert events[0]["event"] == "run_started" and events[-1]["event"] == "run_ended"
    return events


def test_installed_wheel_runs_with_its_shipped_model(tmp_path):
    video = need(MEDIA / "pyfeat_single_face.mp4")
    wheel = _build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    packaged = sorted(n.rsplit("/", 1)[1] for n in names if n.startswith("uar_stream/shipped/default/"))
    expected = sorted(p.name for p in (ROOT / "engines" / "default").iterdir()
                      if p.is_file() and any(fnmatch.fnmatch(p.name, g) for g in SHIPPED_GLOBS))
    assert packaged == expected and "manifest.json" in packaged
    # the one engine file that ships (YuNet's .onnx is a face detector, not an engine)
    shipped_int8 = "uar_stream/shipped/default/engine_int8.onnx"
    built = [n for n in names if n.endswith((".onnx", ".plan")) and n != shipped_int8
             and not n.startswith("uar_stream/pipeline/yunet_weights/")]
    assert not [n for n in names if "ldl" in n or n.startswith("tests/")] and not built
    proposers = {f"uar_stream/pipeline/{n}" for n in PROPOSER_FILES}
    assert proposers <= set(names), sorted(proposers - set(names))

    venv, env = _venv_with_wheel(tmp_path, wheel)
    work = _mkdir(tmp_path / "work")  # empty: no engines/ to find, no checkout beside the package
    r = _sh(venv / "bin" / "python", "-c", "import uar_stream; print(uar_stream.__file__)", cwd=work, env=env)
    assert r.returncode == 0, r.stderr
    assert Path(r.stdout.strip()).resolve().is_relative_to(venv.resolve()), r.stdout
    for mod, cls in (("mtcnn", "MTCNN"), ("yunet", "YuNet")):  # found in the installation, hash checked
        r = _sh(venv / "bin" / "python", "-c", f"from uar_stream.pipeline import {mod}; {mod}.{cls}(); "
                f"print({mod}.WEIGHTS)", cwd=work, env=env)
        assert r.returncode == 0 and Path(r.stdout.strip()).resolve().is_relative_to(venv.resolve()), r.stderr

    r = _sh("uar-stream", "--verbose", "run", "--source", video, "--output", "x.mp4", "--events", "e.jsonl",
            "--no-progress", cwd=work, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    # no calibration faces here: the CPU engine is the int8 file the wheel ships
    assert "engine_int8.onnx, int8 shipped with the model" in r.stderr, r.stderr
    events = _events(work / "e.jsonl")
    started, ended = events[0], events[-1]
    assert started["model_id"] == model_id(ROOT / "engines" / "default")
    assert Path(started["model"]).resolve().is_relative_to(venv.resolve())
    faces = [e for e in events if e["event"] == "face"]
    assert ended["frames"] == 72 and ended["faces"] > 0 and faces
    assert all(e["route"] in ("confident", "ambiguous", "out_of_distribution") for e in faces)
    assert (work / "x.mp4").stat().st_size > 0

    # --model still takes any other directory
    ldl = need(ROOT / "engines" / "ldl" / "manifest.json").parent
    r = _sh("uar-stream", "run", "--source", video, "--events", "ldl.jsonl", "--model", ldl.resolve(),
            "--max-frames", "8", "--no-progress", cwd=work, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert _events(work / "ldl.jsonl")[0]["model_id"] == model_id(ldl)

    # a model that is nowhere: one line saying where it looked (no checkout to look in here)
    r = _sh("uar-stream", "run", "--source", video, "--model", "engines/nope", cwd=work, env=env)
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("uar-stream")]
    assert r.returncode == 2 and len(errors) == 1 and "Traceback" not in r.stderr, r.stderr
    assert errors[0] == (f"uar-stream run: error: model directory not found: engines/nope "
                         f"(looked in {work.resolve() / 'engines' / 'nope'})")
