"""What an int8 file's weights allow: the widest quantised weight, for the saturation check."""
from pathlib import Path

import numpy as np

#: x86 CPUs without VNNI add u8*s8 products in pairs into int16 (vpmaddubsw): with uint8
#: activations up to 255, a pair stays below 2^15 only when |weight| <= 64 (255*64*2 = 32640).
NO_SATURATION_WEIGHT = 64


def widest_int8_weight(path: str | Path) -> int:
    """max |q| over the int8 weight tensors a DequantizeLinear reads in the file at ``path``."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    init = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    read = [n.input[0] for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in init]
    weights = [init[name] for name in read if init[name].dtype == np.int8]
    assert weights, f"{path}: no int8 weights"
    return max(int(np.abs(w.astype(np.int32)).max()) for w in weights)
