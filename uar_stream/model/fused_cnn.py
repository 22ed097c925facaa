"""The compact expression CNN, written so that M independent members run as ONE module.

Every layer is a grouped convolution with ``groups=M``: channels are laid out member-major
(member m owns channels ``[m*c, (m+1)*c)``), so member m's activations never touch member
n's. One member's weights are exactly the M=1 module's weights, and M members are their
concatenation along dim 0; this is how members are saved (one safetensors file each) and
fused on load. Grouped convs export cleanly to ONNX (vmap does not; see STACK.md).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class CnnArch:
    """Shape of one member. Defaults are the shipped model's."""

    stem: int = 32
    widths: tuple[int, ...] = (48, 96, 192)
    blocks: tuple[int, ...] = (1, 1, 1)
    dropout: float = 0.2

    def to_dict(self) -> dict:
        """JSON-ready form (the manifest's ``arch``)."""
        return {"stem": self.stem, "widths": list(self.widths), "blocks": list(self.blocks),
                "dropout": self.dropout}

    @classmethod
    def from_dict(cls, d: dict) -> "CnnArch":
        """Inverse of :meth:`to_dict`."""
        return cls(stem=int(d["stem"]), widths=tuple(int(w) for w in d["widths"]),
                   blocks=tuple(int(b) for b in d["blocks"]), dropout=float(d["dropout"]))


class _GConvBN(nn.Sequential):
    def __init__(self, m: int, cin: int, cout: int, stride: int = 1, k: int = 3, act: bool = True):
        layers: list[nn.Module] = [
            nn.Conv2d(m * cin, m * cout, k, stride, k // 2, groups=m, bias=False),
            nn.BatchNorm2d(m * cout),
        ]
        if act:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class _GBlock(nn.Module):
    """ResNet basic block, member-grouped."""

    def __init__(self, m: int, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = _GConvBN(m, cin, cout, stride)
        self.conv2 = _GConvBN(m, cout, cout, 1, act=False)
        self.skip = None
        if stride != 1 or cin != cout:
            self.skip = _GConvBN(m, cin, cout, stride, k=1, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x if self.skip is None else self.skip(x)
        return F.relu(self.conv2(self.conv1(x)) + s)


class FusedCnn(nn.Module):
    """M members of the compact ResNet in one module.

    forward(x): x is (B, 1, H, W) (every member sees the same face: inference) or
    (B, M, H, W) (member m sees its own image: training with per-member data order).
    Returns logits (B, M, C).
    """

    def __init__(self, members: int, num_classes: int = 8, arch: CnnArch = CnnArch()):
        super().__init__()
        self.members = members
        self.num_classes = num_classes
        self.arch = arch
        m = members
        self.stem = _GConvBN(m, 1, arch.stem)
        layers: list[nn.Module] = []
        cin = arch.stem
        for w, n in zip(arch.widths, arch.blocks, strict=True):
            for j in range(n):
                # Each stage halves the resolution: 48 -> 24 -> 12 -> 6.
                layers.append(_GBlock(m, cin, w, stride=2 if j == 0 else 1))
                cin = w
        self.stages = nn.Sequential(*layers)
        self.dropout = nn.Dropout(arch.dropout)
        self.head = nn.Conv2d(m * cin, m * num_classes, 1, groups=m)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, M, C); the two input layouts are in the class docstring."""
        return self.logits_and_features(x)[0]

    def logits_and_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits (B, M, C), penultimate features (B, M, D)): D is the last stage's width, the
        pooled activations the head reads (what the feature-density score is fitted on)."""
        if x.shape[1] == 1 and self.members > 1:
            # Every member sees the same face: the grouped stem (one input channel per group)
            # is then one plain conv over the shared channel, with the same weight tensor.
            # No M copies of the input, and onnxruntime runs it in its blocked NCHWc layout:
            # the grouped form plus the layout reorder it forced took 13.6% of the CPU time
            # of a batch of 256 for 0.2% of the FLOPs.
            conv, bn, relu = self.stem
            x = relu(bn(F.conv2d(x, conv.weight, None, conv.stride, conv.padding)))
        else:
            x = self.stem(x)
        x = self.stages(x)
        pooled = F.adaptive_avg_pool2d(x, 1)
        logits = self.head(self.dropout(pooled))
        b = x.shape[0]
        return (logits.reshape(b, self.members, self.num_classes),
                pooled.reshape(b, self.members, -1))


def split_members(state: dict[str, torch.Tensor], members: int) -> list[dict[str, torch.Tensor]]:
    """Fused state dict -> one M=1 state dict per member (dim 0 is member-major)."""
    out: list[dict[str, torch.Tensor]] = [{} for _ in range(members)]
    for k, v in state.items():
        if k.endswith("num_batches_tracked"):
            continue
        for m, part in enumerate(v.chunk(members, dim=0)):
            out[m][k] = part.contiguous()
    return out


def join_members(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Per-member (M=1) state dicts -> the fused state dict."""
    keys = states[0].keys()
    return {k: torch.cat([s[k] for s in states], dim=0) for k in keys}
