"""Tensor-Train linear layers (Novikov et al. 2015, "Tensorizing neural networks").

The ``N x M`` weight, with ``M = m_1 ... m_d`` and ``N = n_1 ... n_d``, is stored as d cores
``G_k`` of shape ``(r_{k-1}, m_k, n_k, r_k)`` (``r_0 = r_d = 1``):
``W[(n_1..n_d), (m_1..m_d)] = G_1[:, m_1, n_1, :] ... G_d[:, m_d, n_d, :]``. The forward pass
contracts the input with one core at a time and never forms ``W``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from squeezer.core.spec import register_layer
from squeezer.errors import ConfigError


def tt_modes(n: int, d: int) -> list[int]:
    """Split ``n`` into ``d`` factors as evenly as its prime factors allow (largest first)."""
    if n < 1 or d < 1:
        raise ConfigError(f"cannot split {n} into {d} modes")
    primes, rest, p = [], n, 2
    while p * p <= rest:
        while rest % p == 0:
            primes.append(p)
            rest //= p
        p += 1
    if rest > 1:
        primes.append(rest)
    bins = [1] * d
    for q in sorted(primes, reverse=True):
        bins[bins.index(min(bins))] *= q
    return sorted(bins, reverse=True)


@register_layer
class TTLinear(nn.Module):
    """A linear layer whose weight is a tensor train with the given modes and ranks."""

    def __init__(
        self,
        in_modes: Sequence[int],
        out_modes: Sequence[int],
        ranks: Sequence[int] | int,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if len(in_modes) != len(out_modes) or not in_modes:
            raise ConfigError("in_modes and out_modes need the same, non-zero length")
        d = len(in_modes)
        if isinstance(ranks, int):
            ranks = [1] + [ranks] * (d - 1) + [1]
        ranks = [int(r) for r in ranks]
        if len(ranks) != d + 1 or ranks[0] != 1 or ranks[-1] != 1 or min(ranks) < 1:
            raise ConfigError(f"ranks must be d + 1 = {d + 1} positive ints from 1 to 1: {ranks}")
        self.in_modes, self.out_modes, self.ranks = list(in_modes), list(out_modes), ranks
        self.in_features = math.prod(self.in_modes)
        self.out_features = math.prod(self.out_modes)
        # Glorot-like scale for the product of d cores
        std = (2.0 / (self.in_features + self.out_features)) ** (1 / (2 * d))
        self.cores = nn.ParameterList(
            nn.Parameter(
                torch.randn(ranks[k], self.in_modes[k], self.out_modes[k], ranks[k + 1])
                * std
                / math.sqrt(ranks[k])
            )
            for k in range(d)
        )
        self.bias = nn.Parameter(torch.zeros(self.out_features)) if bias else None

    def spec_args(self) -> dict[str, Any]:
        return {
            "in_modes": self.in_modes,
            "out_modes": self.out_modes,
            "ranks": self.ranks,
            "bias": self.bias is not None,
        }

    def extra_repr(self) -> str:
        return f"in_modes={self.in_modes}, out_modes={self.out_modes}, ranks={self.ranks}"

    def forward(self, x: Tensor) -> Tensor:
        lead = x.shape[:-1]
        b = math.prod(lead)
        rest = self.in_features
        state = x.reshape(b, 1, rest)  # (prefix, rank, remaining inputs)
        for k, core in enumerate(self.cores):
            m = self.in_modes[k]
            rest //= m
            state = state.reshape(state.shape[0], core.shape[0], m, rest)
            state = torch.einsum("prmR,rmnt->pntR", state, core)
            p, n, t, _ = state.shape
            state = state.reshape(p * n, t, rest)
        y = state.reshape(b, self.out_features)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*lead, self.out_features)

    def full_matrix(self) -> Tensor:
        """The ``out_features x in_features`` weight, contracted from the cores."""
        w = self.cores[0].squeeze(0)  # (m1, n1, r1)
        for core in self.cores[1:]:
            m, n, _ = w.shape
            w = torch.einsum("mnr,rabt->manbt", w, core)
            w = w.reshape(m * core.shape[1], n * core.shape[2], core.shape[3])
        return w.squeeze(-1).T

    @classmethod
    def from_linear(
        cls,
        linear: nn.Linear,
        ranks: Sequence[int] | int,
        in_modes: Sequence[int] | None = None,
        out_modes: Sequence[int] | None = None,
        d: int = 3,
    ) -> TTLinear:
        """Tensor-train decomposition of ``linear``'s weight (TT-SVD, computed with TensorLy)."""
        from tensorly.decomposition import tensor_train

        in_modes = list(in_modes or tt_modes(linear.in_features, d))
        out_modes = list(out_modes or tt_modes(linear.out_features, len(in_modes)))
        if math.prod(in_modes) != linear.in_features or math.prod(out_modes) != linear.out_features:
            raise ConfigError(
                f"modes {in_modes} x {out_modes} do not multiply to the layer's "
                f"{linear.in_features} x {linear.out_features}"
            )
        d = len(in_modes)
        w = linear.weight.detach().double().cpu().numpy()  # (N, M)
        t = w.reshape(*out_modes, *in_modes)
        # interleave to (m1, n1, m2, n2, ...) then merge each pair
        order = [i for k in range(d) for i in (d + k, k)]
        t = t.transpose(order).reshape([in_modes[k] * out_modes[k] for k in range(d)])
        if isinstance(ranks, int):
            ranks = [1] + [ranks] * (d - 1) + [1]
        # no rank can exceed what the unfoldings allow
        caps = [1]
        for k in range(1, d):
            left = math.prod(in_modes[:k]) * math.prod(out_modes[:k])
            right = math.prod(in_modes[k:]) * math.prod(out_modes[k:])
            caps.append(min(left, right))
        caps.append(1)
        ranks = [min(int(r), c) for r, c in zip(ranks, caps, strict=True)]
        factors = tensor_train(t, rank=ranks).factors
        layer = cls(
            in_modes, out_modes, [f.shape[0] for f in factors] + [1], linear.bias is not None
        )
        with torch.no_grad():
            for k, f in enumerate(factors):
                core = np.asarray(f).reshape(f.shape[0], in_modes[k], out_modes[k], f.shape[-1])
                layer.cores[k].copy_(torch.from_numpy(core))
            if linear.bias is not None:
                layer.bias.copy_(linear.bias)
        return layer.to(linear.weight.dtype)
