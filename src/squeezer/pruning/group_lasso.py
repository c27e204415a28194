"""Structured sparsity learning (Wen et al. 2016): group-lasso regularizers during training.

The penalty lambda * sum over groups of ||W_g||_2 pushes whole groups of weights to exactly
(numerically) zero: the filters of a convolution (its output channels), its input channels,
or every weight of a named branch (a residual branch, say). Zeroed filters are then removed
physically with ``sq.prune_channels(model, x, criterion="l2", threshold=...)``, and blocks
whose branch is zero with :func:`squeezer.surgery.remove_identity_blocks`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from squeezer.errors import ConfigError
from squeezer.surgery import matches
from squeezer.train import Callback, TrainState

KINDS = ("filters", "channels")
EPS = 1e-12


def _add_group_grad(weight: Tensor, dims: tuple[int, ...], strength: float) -> None:
    norm = weight.detach().pow(2).sum(dims, keepdim=True).sqrt()
    weight.grad.add_(strength * weight.detach() / (norm + EPS))


class GroupLasso(Callback):
    """Adds the group-lasso subgradient to convolution weights after each backward pass.

    Args:
        strength: lambda.
        groups: ``"filters"`` and/or ``"channels"``.
        branches: names or patterns of modules whose weights form one group each.
        exclude: names or patterns of convolutions left unregularized.
    """

    def __init__(
        self,
        strength: float = 1e-4,
        groups: Sequence[str] = ("filters",),
        branches: Sequence[str] = (),
        exclude: Sequence[str] = (),
    ) -> None:
        unknown = set(groups) - set(KINDS)
        if unknown or strength < 0:
            raise ConfigError(f"groups must be among {KINDS} and strength >= 0")
        self.strength, self.groups = strength, tuple(groups)
        self.branches, self.exclude = tuple(branches), tuple(exclude)

    def on_after_backward(self, state: TrainState) -> None:
        with torch.no_grad():
            for name, m in state.model.named_modules():
                if self.branches and matches(name, self.branches):
                    params = [p for p in m.parameters() if p.grad is not None]
                    norm = torch.sqrt(sum(p.detach().pow(2).sum() for p in params))
                    for p in params:
                        p.grad.add_(self.strength * p.detach() / (norm + EPS))
                if not isinstance(m, nn.Conv2d) or m.weight.grad is None:
                    continue
                if matches(name, self.exclude):
                    continue
                if "filters" in self.groups:
                    _add_group_grad(m.weight, (1, 2, 3), self.strength)
                if "channels" in self.groups and m.groups == 1:
                    _add_group_grad(m.weight, (0, 2, 3), self.strength)


def group_norms(model: nn.Module) -> dict[str, Tensor]:
    """The L2 norm of every filter of every convolution, by layer name."""
    return {
        n: m.weight.detach().flatten(1).norm(dim=1)
        for n, m in model.named_modules()
        if isinstance(m, nn.Conv2d)
    }
