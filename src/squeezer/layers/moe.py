"""Sparsely-gated mixture of experts (Shazeer et al. 2017, "Outrageously Large Neural
Networks").

Each example goes to the ``k`` experts of highest gate logit; its output is the softmax of
those ``k`` logits times the experts' outputs. Only the chosen experts run on an example, so
the work per example is ``k`` experts whatever their number. While training, the logits get
tunable Gaussian noise, ``H(x)_i = (x W_g)_i + N(0, 1) softplus((x W_noise)_i)``, and the
layer leaves a load-balancing term in :attr:`MixtureOfExperts.aux_loss` that
:func:`squeezer.fit` adds to the loss by itself:

- importance: ``w_importance * CV(sum over the batch of the gates)^2``;
- load: ``w_load * CV(load)^2``, with the smooth load estimator of the paper: the
  probability, over a new draw of its noise, that expert ``i`` is still among the top ``k``
  for the example, given the other logits: ``Phi((clean_i - threshold) / std_i)``, the
  threshold being the ``k``-th largest noisy logit of the others.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from squeezer.core.spec import register_layer


def cv_squared(v: Tensor) -> Tensor:
    """The squared coefficient of variation ``var / mean^2`` (0 for a single value)."""
    if v.numel() <= 1:
        return v.new_zeros(())
    return v.float().var() / (v.float().mean().square() + 1e-10)


def load_probability(clean: Tensor, noisy: Tensor, std: Tensor, k: int) -> Tensor:
    """``P(expert i in the top k)`` for every example and expert, over a new draw of that
    expert's noise with every other noisy logit fixed (the paper's smooth load)."""
    top = noisy.topk(k + 1, dim=1).values  # (N, k+1), descending
    in_top = noisy >= top[:, k - 1 : k]  # currently among the k largest
    # inside: it stays in if it beats the (k+1)-th largest (the k-th of the others);
    # outside: it must beat the k-th largest
    threshold = torch.where(in_top, top[:, k : k + 1], top[:, k - 1 : k])
    normal = torch.distributions.Normal(clean.new_zeros(()), clean.new_ones(()))
    return normal.cdf((clean - threshold) / std)


@register_layer
class MixtureOfExperts(nn.Module):
    """A mixture of ``experts`` two-layer MLPs (``in -> hidden -> out``, ReLU) with noisy
    top-``k`` gating (see the module). Works on ``(..., in_features)`` inputs.

    Attributes:
        aux_loss: the load-balancing term of the last training forward pass (None in eval).
        last_load: how many examples each expert received in the last forward pass.
    """

    def __init__(
        self, in_features: int, out_features: int, experts: int = 8, k: int = 2,
        hidden: int | None = None, noisy: bool = True, w_importance: float = 0.1,
        w_load: float = 0.1,
    ) -> None:  # fmt: skip
        super().__init__()
        if not 1 <= k <= experts:
            raise ValueError(f"k must be in [1, experts={experts}], got {k}")
        self.in_features, self.out_features = in_features, out_features
        self.num_experts, self.k, self.noisy = experts, k, noisy
        self.hidden = hidden or 4 * in_features
        self.w_importance, self.w_load = w_importance, w_load
        self.experts = nn.ModuleList(
            nn.Sequential(
                nn.Linear(in_features, self.hidden), nn.ReLU(), nn.Linear(self.hidden, out_features)
            )
            for _ in range(experts)
        )
        # zero gates at the start: every expert equally likely (the paper's initialization)
        self.w_gate = nn.Parameter(torch.zeros(in_features, experts))
        self.w_noise = nn.Parameter(torch.zeros(in_features, experts))
        self.aux_loss: Tensor | None = None
        self.last_load: Tensor | None = None

    def spec_args(self) -> dict[str, Any]:
        return {"in_features": self.in_features, "out_features": self.out_features,
                "experts": self.num_experts, "k": self.k, "hidden": self.hidden,
                "noisy": self.noisy, "w_importance": self.w_importance,
                "w_load": self.w_load}  # fmt: skip

    def extra_repr(self) -> str:
        return f"experts={self.num_experts}, k={self.k}, noisy={self.noisy}"

    def gates(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """``(N, experts)`` gates (``k`` non-zero per row, summing to 1) of ``(N, in)``
        inputs, and the load-balancing term when training (else None)."""
        clean = x @ self.w_gate
        noisy_train = self.training and self.noisy
        if noisy_train:
            std = F.softplus(x @ self.w_noise) + 1e-2
            logits = clean + torch.randn_like(clean) * std
        else:
            logits = clean
        k = self.k
        top = logits.topk(min(k + 1, self.num_experts), dim=1)
        weights = torch.softmax(top.values[:, :k], dim=1)
        gates = torch.zeros_like(logits).scatter(1, top.indices[:, :k], weights)
        if not self.training:
            return gates, None
        if noisy_train and k < self.num_experts:
            load = load_probability(clean, logits, std, k).sum(0)
        else:
            load = (gates > 0).float().sum(0)
        aux = self.w_importance * cv_squared(gates.sum(0)) + self.w_load * cv_squared(load)
        return gates, aux

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        gates, self.aux_loss = self.gates(flat)
        out = flat.new_zeros(flat.shape[0], self.out_features)
        chosen = gates > 0
        self.last_load = chosen.sum(0).detach()
        for e, expert in enumerate(self.experts):
            rows = chosen[:, e].nonzero().flatten()
            if rows.numel():
                out.index_add_(0, rows, gates[rows, e : e + 1] * expert(flat[rows]))
        return out.reshape(*shape[:-1], self.out_features)
