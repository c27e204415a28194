"""Stochastic depth (Huang, Sun, Liu, Sedra & Weinberger 2016).

Each residual branch survives a training step with probability ``p_l`` (a Bernoulli draw per
mini-batch, as in the paper, or per example with ``mode="row"``); a dropped branch leaves
the block its shortcut alone. Survival decays linearly with depth, ``p_l = 1 - (l / L) (1 -
p_L)``, from 1 at the input to ``p_L`` (0.5 in the paper) at the last block. At inference
every branch runs and its output is scaled by ``p_l`` (the paper's rule), so the expected
training-time block is what is evaluated.

:class:`StochasticDepth` wraps the last layer of a residual branch (the BatchNorm before the
addition, in the zoo's ResNets): it sees that layer's input, so a dropped branch costs
nothing after that point, and the whole branch is skipped when the wrapped module is the
branch itself. The conversion :class:`StochasticDepthConfig` (``sq.dynamic.StochasticDepth``)
finds the zoo's residual blocks by themselves, or takes the layers to wrap by name.

    sq.convert_(model, sq.dynamic.StochasticDepth(final_survival=0.5))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from squeezer.config import check
from squeezer.conversion import ConversionReport, convert_layers_
from squeezer.core import LayerSelection, register_handler
from squeezer.core.modules import matches
from squeezer.core.spec import register_block


@register_block
class StochasticDepth(nn.Module):
    """``module`` kept with probability ``survival`` while training (zeros otherwise, shaped
    like the input when ``same_shape``), scaled by ``survival`` at inference.

    Args:
        module: the branch's last layer, or the whole branch.
        survival: the probability the branch is kept in a training step, in (0, 1].
        mode: ``"batch"`` (one draw per mini-batch: the paper's, and a dropped branch is
            not computed) or ``"row"`` (one draw per example).
        same_shape: the module's output has its input's shape (BatchNorm, a residual
            branch without a stride), so a dropped batch needs no forward pass at all.
    """

    def __init__(
        self, module: nn.Module, survival: float = 1.0, mode: str = "batch",
        same_shape: bool = True,
    ) -> None:  # fmt: skip
        super().__init__()
        if not 0 < survival <= 1:
            raise ValueError(f"survival must be in (0, 1], got {survival}")
        if mode not in ("batch", "row"):
            raise ValueError(f"mode must be 'batch' or 'row', got {mode!r}")
        self.module, self.survival, self.mode, self.same_shape = module, survival, mode, same_shape

    def spec_args(self) -> dict[str, Any]:
        return {"survival": self.survival, "mode": self.mode, "same_shape": self.same_shape}

    def extra_repr(self) -> str:
        return f"survival={self.survival:.3f}, mode={self.mode}"

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            out = self.module(x)
            return out if self.survival == 1 else out * self.survival
        if self.mode == "batch":
            if float(torch.rand(())) < self.survival:
                return self.module(x)
            return torch.zeros_like(x) if self.same_shape else self.module(x) * 0.0
        out = self.module(x)
        keep = torch.rand(out.shape[0], *([1] * (out.dim() - 1)), device=out.device)
        return out * (keep < self.survival).to(out.dtype)


@dataclass(frozen=True)
class StochasticDepthConfig(LayerSelection):
    """Give residual branches stochastic depth with linearly decaying survival.

    Attributes:
        final_survival: ``p_L``, the last branch's survival probability, in (0, 1].
        mode: ``"batch"`` or ``"row"`` (see :class:`StochasticDepth`).
        layers: the last layer of every residual branch, by name or pattern, in forward
            order; empty: the zoo's residual blocks (``bn2`` of a basic block, ``bn3`` of a
            bottleneck).
        exclude, layer_types: as for every config.
    """

    final_survival: float = 0.5
    mode: str = "batch"
    default_types: ClassVar[tuple[str, ...]] = ()

    def validate(self) -> None:
        super().validate()
        p = self.final_survival
        check(0 < p <= 1, f"StochasticDepth: final_survival must be in (0, 1], got {p}")
        check(self.mode in ("batch", "row"), "StochasticDepth: mode must be 'batch' or 'row'")


def _zoo_branch_ends(model: nn.Module) -> list[str]:
    from squeezer.models.resnet import BasicBlock, Bottleneck

    ends = []
    for name, m in model.named_modules():
        if isinstance(m, BasicBlock):
            ends.append(f"{name}.bn2")
        elif isinstance(m, Bottleneck):
            ends.append(f"{name}.bn3")
    return ends


@register_handler("convert", StochasticDepthConfig)
def stochastic_depth_(
    model: nn.Module, config: StochasticDepthConfig, example_inputs: Any = None, *,
    data: Any = None,
) -> ConversionReport:  # fmt: skip
    """Wrap every residual branch's last layer in :class:`StochasticDepth` (in place),
    survival decaying linearly over them in the order given (the zoo's: forward order)."""
    modules = dict(model.named_modules())
    if config.layers:
        chosen = [n for n in modules if n and matches(n, config.layers)]
    else:
        chosen = _zoo_branch_ends(model)
    chosen = [n for n in chosen if not matches(n, config.exclude)]
    total = len(chosen)
    survival = {n: 1 - (i + 1) / max(total, 1) * (1 - config.final_survival)
                for i, n in enumerate(chosen)}  # fmt: skip

    def make(name: str, module: nn.Module) -> nn.Module | str:
        if isinstance(module, StochasticDepth):
            return "already has stochastic depth"
        return StochasticDepth(module, survival[name], config.mode)

    selected = [(n, modules[n]) for n in chosen]
    return convert_layers_(model, config, make, example_inputs, "stochastic depth", selected)
