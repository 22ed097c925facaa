"""Helpers for the live-source tests and tools/bench_live.py: a real RTSP server on loopback
(aio-rtsp-toolkit, pure Python, started and stopped here), free ports, a tiny model."""
from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


class RtspServer:
    """Serves copies of media files over RTSP (TCP interleaved) on 127.0.0.1.

    ``url(name, loop=True)`` -> rtsp://127.0.0.1:PORT/NAME?play_count=0 (0 loops forever).
    ``kill()`` ends it abruptly (the client sees the connection drop), ``start()`` serves
    again on the same port, ``pause()``/``resume()`` freeze it (a hung server: the
    connection stays open but nothing arrives).
    """

    def __init__(self, root: Path, files: list[Path], port: int | None = None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        for f in files:  # the server refuses paths outside its root: copy, do not link
            shutil.copy(f, self.root / Path(f).name)
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    def url(self, name: str, loop: bool = True, userinfo: str = "") -> str:
        cred = f"{userinfo}@" if userinfo else ""
        return f"rtsp://{cred}127.0.0.1:{self.port}/{name}?play_count={0 if loop else 1}"

    def start(self, timeout_s: float = 15.0) -> "RtspServer":
        code = ("import asyncio, aio_rtsp_toolkit.server as s; "
                f"asyncio.run(s.serve({str(self.root)!r}, host='127.0.0.1', port={self.port}))")
        self.proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while not port_open(self.port):
            if self.proc.poll() is not None:
                raise RuntimeError(f"RTSP server exited with {self.proc.returncode}")
            if time.monotonic() > deadline:
                self.kill()
                raise TimeoutError(f"RTSP server not listening on {self.port} after {timeout_s} s")
            time.sleep(0.05)
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def pause(self) -> None:
        import signal

        if self.proc is not None:
            self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        import signal

        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)

    def __enter__(self) -> "RtspServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.resume()
        self.kill()


def make_tiny_model(path: Path, members: int = 2, seed: int = 0) -> Path:
    """A small random-weight model directory in the shipped format (fast to run; routes
    are meaningless, the pipeline is real)."""
    import torch

    from uar_stream.model.fused_cnn import CnnArch, FusedCnn
    from uar_stream.model.store import MANIFEST, Manifest, file_sha256, write_member

    arch = CnnArch(stem=8, widths=(8, 16, 16), blocks=(1, 1, 1), dropout=0.0)
    torch.manual_seed(seed)
    path.mkdir(parents=True, exist_ok=True)
    files, hashes = [], {}
    for m in range(members):
        net = FusedCnn(1, 8, arch)
        name = f"member_{m:02d}.safetensors"
        write_member(path / name, {k: v for k, v in net.state_dict().items()
                                   if not k.endswith("num_batches_tracked")})
        files.append(name)
        hashes[name] = file_sha256(path / name)
    man = Manifest(members=members, files=files, arch=arch.to_dict(), sha256=hashes,
                   normalization={"mean": 0.5, "std": 0.25, "scale": 1 / 255})
    (path / MANIFEST).write_text(man.to_json())
    return path


class SlowEngine:
    """Wraps a real engine and sleeps ``delay_s`` per call: inference slower than the camera."""

    def __init__(self, engine, delay_s: float):
        self._engine, self.delay_s = engine, delay_s
        self.name, self.members, self.num_classes = engine.name, engine.members, engine.num_classes
        self.calls = 0

    def infer(self, batch: np.ndarray):
        self.calls += 1
        time.sleep(self.delay_s)
        return self._engine.infer(batch)


def read_video_frames(path: Path) -> tuple[int, tuple[int, int]]:
    """(decoded frame count, (width, height)) of a written video."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    n = 0
    size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    while cap.read()[0]:
        n += 1
    cap.release()
    return n, size
