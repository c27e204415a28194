"""Sparsity training for network slimming (Liu et al. 2017, "Learning Efficient Convolutional
Networks through Network Slimming").

An L1 penalty lambda * sum |gamma| on every BatchNorm scale drives the scales of unneeded
channels towards zero during training; channels are then removed by BatchNorm scale with one
global ranking (``sq.prune_channels(..., criterion="bn_scale", scope="global")``). The paper
uses lambda = 1e-4 on CIFAR.
"""

from __future__ import annotations

import torch
from torch import nn

from squeezer.errors import ConfigError
from squeezer.train import Callback, TrainState


class BNSparsity(Callback):
    """Adds the subgradient lambda * sign(gamma) to every BatchNorm scale's gradient.

    Args:
        strength: lambda.
    """

    def __init__(self, strength: float = 1e-4) -> None:
        if strength < 0:
            raise ConfigError("strength must be >= 0")
        self.strength = strength

    def on_after_backward(self, state: TrainState) -> None:
        with torch.no_grad():
            for m in state.model.modules():
                if (
                    isinstance(m, nn.modules.batchnorm._BatchNorm)
                    and m.weight is not None
                    and m.weight.grad is not None
                ):
                    m.weight.grad.add_(self.strength * torch.sign(m.weight))


def bn_l1(model: nn.Module) -> float:
    """Sum of |gamma| over all BatchNorm layers (what :class:`BNSparsity` penalizes)."""
    return float(
        sum(
            m.weight.detach().abs().sum()
            for m in model.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.weight is not None
        )
    )
