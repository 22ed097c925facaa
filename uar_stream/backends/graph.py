"""The inference graph shared by every backend: fused members -> two temperatures -> softmax ->
decomposition (+ the feature-density score). Exported to ONNX as is, so the uncertainties are
computed inside the engine."""
from __future__ import annotations

import torch
from torch import nn

from uar_stream.model.density import DensityModel

#: Names of the graph's input and outputs in every exported ONNX file / TensorRT plan.
INPUT_NAME = "faces"
BASE_OUTPUT_NAMES = ("mean_probs", "total", "aleatoric", "epistemic", "member_probs")
#: The extra output of a model with a density file (manifest ``density``).
DENSITY_OUTPUT = "density"
OUTPUT_NAMES = BASE_OUTPUT_NAMES  # a model without a density file


def output_names(has_density: bool) -> tuple[str, ...]:
    """The graph's outputs, in order, for a model with or without a density file."""
    return BASE_OUTPUT_NAMES + ((DENSITY_OUTPUT,) if has_density else ())


class UncertaintyGraph(nn.Module):
    """forward(x (B,1,H,W) float32) -> (mean_probs (B,C), total (B,), aleatoric (B,),
    epistemic (B,), member_probs (B,M,C)[, density (B,)]), all float32.

    Two temperatures (manifest ``temperature`` and ``decomposition_temperature``):
    ``mean_probs`` is the calibrated prediction (members at ``temperature``, averaged), what is
    displayed and what calibration is measured on; ``member_probs`` and the three uncertainties
    are at ``decomposition_temperature``, and mirror
    :func:`uar_stream.model.uncertainty.decompose` of ``member_probs``. Sharpening before the
    entropies turns ambiguity into member disagreement (docs/evaluation.md).

    ``density`` (only with a :class:`~uar_stream.model.density.DensityModel`): the mean over
    members of the smallest class-conditional Mahalanobis distance of the penultimate
    features, divided by D (:meth:`DensityModel.score` is the numpy reference).

    The members may hold fp16/bf16 weights (the fp16 ONNX export): the input is cast to the
    weights' dtype, and everything after the logits and features runs in fp32, because
    entropies of small probabilities underflow in half precision (1e-12 is 0 in fp16, and
    0 * log 0 gives NaN).
    """

    def __init__(self, fused: nn.Module, temperature: float = 1.0,
                 decomposition_temperature: float | None = None,
                 density: DensityModel | None = None):
        super().__init__()
        self.fused = fused
        t_dec = temperature if decomposition_temperature is None else decomposition_temperature
        self.register_buffer("inv_temperature", torch.tensor(1.0 / float(temperature)))
        self.register_buffer("inv_decomposition_temperature", torch.tensor(1.0 / float(t_dec)))
        self.has_density = density is not None
        if density is not None:
            self.register_buffer("density_means", torch.from_numpy(density.means.copy()))
            self.register_buffer("density_precision", torch.from_numpy(density.precision.copy()))

    @property
    def members(self) -> int:
        """Ensemble size M."""
        return int(self.fused.members)

    @property
    def output_names(self) -> tuple[str, ...]:
        """This graph's outputs, in order."""
        return output_names(self.has_density)

    def forward(self, x: torch.Tensor):
        """x (B, 1, H, W) -> the outputs named by :attr:`output_names` (class docstring)."""
        weight_dtype = next(self.fused.parameters()).dtype
        raw, feats = self.fused.logits_and_features(x.to(weight_dtype))
        raw = raw.float()
        mean = torch.softmax(raw * self.inv_temperature.float(), dim=-1).mean(dim=1)
        logits = raw * self.inv_decomposition_temperature.float()
        member_probs = torch.softmax(logits, dim=-1)
        member_logp = torch.log_softmax(logits, dim=-1)
        mean_dec = member_probs.mean(dim=1)
        total = -(mean_dec * torch.log(mean_dec.clamp_min(1e-12))).sum(-1)
        aleatoric = -(member_probs * member_logp).sum(-1).mean(dim=1)
        epistemic = (total - aleatoric).clamp_min(0.0)
        if not self.has_density:
            return mean, total, aleatoric, epistemic, member_probs
        return mean, total, aleatoric, epistemic, member_probs, self._density(feats.float())

    def _density(self, feats: torch.Tensor) -> torch.Tensor:
        """feats (B, M, D) -> (B,): matmuls only (every exporter and TensorRT take them)."""
        means, prec = self.density_means, self.density_precision  # (M, C, D), (M, D, D)
        m, c, d = means.shape
        diff = feats.unsqueeze(2) - means.unsqueeze(0)  # (B, M, C, D)
        per_member = diff.permute(1, 0, 2, 3).reshape(m, -1, d)  # (M, B*C, D)
        maha = (torch.bmm(per_member, prec) * per_member).sum(-1)  # (M, B*C)
        maha = torch.min(maha.reshape(m, -1, c), dim=2)[0]  # (M, B)
        return maha.mean(dim=0) / d
