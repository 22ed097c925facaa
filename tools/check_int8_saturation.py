"""Would an int8 file saturate on an x86 CPU without VNNI? Emulates its first convolution.

    python tools/check_int8_saturation.py [FILE ...]   (default: engines/default/engine_int8.onnx)

CPUs without VNNI (AVX2, AVX-512 without VNNI) run onnxruntime's U8S8 convolutions with
``vpmaddubsw``: two u8 x s8 products are added into an int16, saturating at +-32767. This tool
quantises 64 real FER+ PublicTest faces as the file's first QuantizeLinear does, forms the first
conv's 3x3 windows (padding with the zero point), sums the products in pairs as that instruction
does, and prints the share of conv outputs with a saturated pair. 0% for any file whose weights
are held to 7 bits (docs/engines.md#int8-onnxruntime-cpu).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from uar_stream.model.preprocess import prepare_batch

ROOT = Path(__file__).resolve().parents[1]
PUBLICTEST = ROOT.parent / "shared" / "data" / "ferplus" / "publictest.npz"
INT16_MAX = 32767


def first_conv_int8(path: Path):
    """(uint8 input scale, zero point, int8 weights) of the file's first convolution."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    values = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    values.update({n.output[0]: numpy_helper.to_array(n.attribute[0].t)
                   for n in model.graph.node if n.op_type == "Constant"})
    producer = {o: n for n in model.graph.node for o in n.output}
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    x_dq, w_dq = producer[conv.input[0]], producer[conv.input[1]]
    weights = values[w_dq.input[0]]
    if weights.dtype != np.int8 or weights.shape[1:] != (1, 3, 3):
        raise SystemExit(f"{path}: the first conv is not an int8 3x3 conv on one channel")
    return float(values[x_dq.input[1]]), int(values[x_dq.input[2]]), weights


def saturated_share(path: Path, faces: np.ndarray) -> tuple[float, int]:
    """(share of first-conv outputs with a saturated pair, widest |weight|) on ``faces``."""
    scale, zero, w = first_conv_int8(path)
    x = np.clip(np.round(prepare_batch(faces)[:, 0] / scale) + zero, 0, 255).astype(np.int32)
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1)), constant_values=zero)
    h, wd = x.shape[1:]
    windows = np.stack([xp[:, i:i + h, j:j + wd] for i in range(3) for j in range(3)], -1)
    windows = np.concatenate([windows, np.zeros_like(windows[..., :1])], -1)  # 9 taps, padded to pairs
    taps = np.concatenate([w.reshape(len(w), 9).astype(np.int32), np.zeros((len(w), 1), np.int32)], 1)
    hit = total = 0
    for k in taps:  # one output channel at a time (memory)
        products = windows * k
        pairs = products[..., 0::2] + products[..., 1::2]
        hit += int((np.abs(pairs) > INT16_MAX).any(-1).sum())
        total += pairs[..., 0].size
    return hit / total, int(np.abs(taps).max())


def main() -> int:
    """Print the saturated share for each file."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="*", type=Path,
                    default=[ROOT / "engines" / "default" / "engine_int8.onnx"])
    ap.add_argument("--faces", type=int, default=64)
    a = ap.parse_args()
    with np.load(PUBLICTEST) as d:
        faces = d["images"][:a.faces]
    for f in a.files:
        if not f.is_file():
            raise SystemExit(f"check_int8_saturation: error: {f}: no such file")
        share, widest = saturated_share(f, faces)
        print(f"{f}: widest |weight| {widest}; first-conv outputs with a saturated int16 pair on a "
              f"CPU without VNNI: {share:.2%} ({a.faces} PublicTest faces)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
