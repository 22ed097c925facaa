"""The inference graph shared by every backend: fused members -> temperature -> softmax ->
decomposition. Exported to ONNX as is, so the uncertainties are computed inside the engine."""
from __future__ import annotations

import torch
from torch import nn

#: Names of the graph's input and outputs in every exported ONNX file / TensorRT plan.
INPUT_NAME = "faces"
OUTPUT_NAMES = ("mean_probs", "total", "aleatoric", "epistemic", "member_probs")


class UncertaintyGraph(nn.Module):
    """forward(x (B,1,H,W) float32) -> (mean_probs (B,C), total (B,), aleatoric (B,),
    epistemic (B,), member_probs (B,M,C)), all float32. Mirrors
    :func:`uar_stream.model.uncertainty.decompose`.

    The members may hold fp16/bf16 weights (the fp16 ONNX export): the input is cast to the
    weights' dtype, and everything after the logits runs in fp32, because entropies of small
    probabilities underflow in half precision (1e-12 is 0 in fp16, and 0 * log 0 gives NaN).
    """

    def __init__(self, fused: nn.Module, temperature: float = 1.0):
        super().__init__()
        self.fused = fused
        self.register_buffer("inv_temperature", torch.tensor(1.0 / float(temperature)))

    @property
    def members(self) -> int:
        """Ensemble size M."""
        return int(self.fused.members)

    def forward(self, x: torch.Tensor):
        """x (B, 1, H, W) -> mean_probs (B, C), total, aleatoric, epistemic (B,), member_probs (B, M, C)."""
        weight_dtype = next(self.fused.parameters()).dtype
        logits = self.fused(x.to(weight_dtype)).float() * self.inv_temperature.float()
        member_probs = torch.softmax(logits, dim=-1)
        member_logp = torch.log_softmax(logits, dim=-1)
        mean = member_probs.mean(dim=1)
        total = -(mean * torch.log(mean.clamp_min(1e-12))).sum(-1)
        aleatoric = -(member_probs * member_logp).sum(-1).mean(dim=1)
        epistemic = (total - aleatoric).clamp_min(0.0)
        return mean, total, aleatoric, epistemic, member_probs
