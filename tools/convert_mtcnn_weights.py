"""Developer tool (issue #15): MTCNN's weights from the facenet-pytorch wheel into one safetensors file.

    python tools/convert_mtcnn_weights.py [--wheel facenet_pytorch-2.6.0-py3-none-any.whl]
        [--out uar_stream/pipeline/mtcnn_weights]

The wheel (MIT, https://pypi.org/project/facenet-pytorch/) ships PNet, RNet and ONet as three
pickled state dicts (facenet_pytorch/data/{pnet,rnet,onet}.pt). They are read here once, offline,
with ``torch.load(weights_only=True)``, so the product itself never unpickles; the tensors are
written as ``mtcnn.safetensors`` (keys ``pnet.conv1.weight`` ...), its sha256 beside it
(``mtcnn.safetensors.sha256``, the value :data:`uar_stream.pipeline.mtcnn.WEIGHTS_SHA256` must
hold), and the wheel's LICENSE.md. facenet-pytorch itself is not installed: it pins an old torch.
"""
from __future__ import annotations

import argparse
import io
import sys
import zipfile
from pathlib import Path

import torch
from safetensors.torch import save_file

from uar_stream.model.store import file_sha256

ROOT = Path(__file__).resolve().parents[1]
NETS = ("pnet", "rnet", "onet")


def convert(wheel: Path, out: Path) -> str:
    """Write mtcnn.safetensors, its .sha256 and LICENSE.md into ``out``; return the sha256."""
    out.mkdir(parents=True, exist_ok=True)
    tensors = {}
    with zipfile.ZipFile(wheel) as z:
        for net in NETS:
            state = torch.load(io.BytesIO(z.read(f"facenet_pytorch/data/{net}.pt")), weights_only=True,
                               map_location="cpu")
            tensors.update({f"{net}.{k}": v.float().contiguous() for k, v in state.items()})
        licence = next(n for n in z.namelist() if n.endswith(".dist-info/LICENSE.md"))
        (out / "LICENSE.md").write_bytes(z.read(licence))
    path = out / "mtcnn.safetensors"
    save_file(tensors, str(path), metadata={"source": wheel.name, "nets": ",".join(NETS)})
    digest = file_sha256(path)
    (out / "mtcnn.safetensors.sha256").write_text(f"{digest}  mtcnn.safetensors\n")
    return digest


def main(argv: list[str] | None = None) -> int:
    """Convert and print the sha256."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wheel", type=Path, default=Path("facenet_pytorch-2.6.0-py3-none-any.whl"),
                    help="the wheel as `pip download facenet-pytorch==2.6.0 --no-deps` writes it")
    ap.add_argument("--out", type=Path, default=ROOT / "uar_stream" / "pipeline" / "mtcnn_weights")
    a = ap.parse_args(argv)
    if not a.wheel.is_file():
        print(f"{a.wheel}: no such wheel (pip download facenet-pytorch==2.6.0 --no-deps)", file=sys.stderr)
        return 2
    digest = convert(a.wheel, a.out)
    print(f"{a.out / 'mtcnn.safetensors'}: sha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
