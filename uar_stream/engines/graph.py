"""The inference graph shared by every backend: fused members -> temperature -> softmax ->
decomposition. Exported to ONNX as is, so the uncertainties are computed inside the engine."""
from __future__ import annotations

import torch
from torch import nn


class UncertaintyGraph(nn.Module):
    """forward(x (B,1,H,W)) -> (mean_probs (B,C), total (B,), aleatoric (B,), epistemic (B,),
    member_probs (B,M,C)). Mirrors :func:`uar_stream.uncertainty.decompose`."""

    def __init__(self, fused: nn.Module, temperature: float = 1.0):
        super().__init__()
        self.fused = fused
        self.register_buffer("inv_temperature", torch.tensor(1.0 / float(temperature)))

    def forward(self, x: torch.Tensor):
        logits = self.fused(x) * self.inv_temperature
        member_probs = torch.softmax(logits.float(), dim=-1)
        member_logp = torch.log_softmax(logits.float(), dim=-1)
        mean = member_probs.mean(dim=1)
        total = -(mean * torch.log(mean.clamp_min(1e-12))).sum(-1)
        aleatoric = -(member_probs * member_logp).sum(-1).mean(dim=1)
        epistemic = (total - aleatoric).clamp_min(0.0)
        return mean, total, aleatoric, epistemic, member_probs
