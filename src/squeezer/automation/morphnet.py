"""MorphNet-style shrink and expand (Gordon et al. 2018), within the seed network's width.

Shrink: train with a FLOPs-weighted L1 penalty on the BatchNorm scales, ``lambda * sum_g c_g *
sum_{channel in g} |gamma|``, where ``c_g`` is what one channel of group ``g`` costs in FLOPs
(its share of every layer it feeds or is fed by, from the space's cost model, normalized so
the dearest channel costs 1). Channels whose ``|gamma|`` falls below ``threshold`` are dead;
each group keeps the fraction ``f_g`` still alive, so expensive groups shrink more than cheap
ones for the same loss of accuracy.

Expand: the live fractions are scaled by one factor ``w``, ``keep_g = min(1, w * f_g)``, the
largest ``w`` whose model meets the FLOPs (or parameter) budget, so the budget the shrinking
freed is spent where the network had kept capacity. MorphNet's expansion can grow past the
seed's widths by re-instantiating the architecture; here it is capped at the seed's width
(every layer's width is a removal from the user's model), so seed a wider model to let it grow.

The result is a ratio policy of the space (removal per group), built by BatchNorm-scale
channel pruning of the trained model; fine-tune it (or train it from scratch) afterwards.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from squeezer.automation.space import Budget, ChannelSpace
from squeezer.core import Report
from squeezer.errors import ConfigError
from squeezer.train import Callback, TrainState, fit


def channel_costs(space: ChannelSpace, metric: str = "flops") -> dict[str, float]:
    """FLOPs (or parameters) one channel of each group carries: the derivative of the
    space's cost model at full width, per channel."""
    which = "params" if metric == "size" else metric
    cost: dict[str, float] = defaultdict(float)
    for layer, count in space.base[which].items():
        for group, e in space.exponents[which].get(layer, {}).items():
            cost[group] += e * count
    return {g: cost[g] / space.channels[g] for g in space.names}


def bn_channels(space: ChannelSpace) -> dict[str, list[list[tuple[str, int]]]]:
    """Per group, per channel class: the (BatchNorm module, index) pairs holding its gammas."""
    out: dict[str, list[list[tuple[str, int]]]] = {}
    bn = nn.modules.batchnorm._BatchNorm
    norms = {
        n for n, m in space.model.named_modules() if isinstance(m, bn) and m.weight is not None
    }
    for name in space.names:
        out[name] = [[(b.module, i) for b, i in c.members if b.kind == "bn" and b.module in norms]
                     for c in space.classes[name]]  # fmt: skip
    return out


class FlopsGammaPenalty(Callback):
    """Adds the subgradient of ``strength * sum_g c_g * sum |gamma|`` to the BatchNorm
    scales' gradients (MorphNet's FLOPs regularizer on gammas)."""

    def __init__(self, space: ChannelSpace, strength: float, metric: str = "flops") -> None:
        if strength < 0:
            raise ConfigError("FlopsGammaPenalty: strength must be >= 0")
        costs = channel_costs(space, metric)
        top = max(costs.values(), default=1.0) or 1.0
        coef: dict[str, torch.Tensor] = {}
        modules = dict(space.model.named_modules())
        for group, classes in bn_channels(space).items():
            for members in classes:
                for bn, i in members:
                    if bn not in coef:
                        coef[bn] = torch.zeros_like(modules[bn].weight.detach())
                    coef[bn][i] = max(float(coef[bn][i]), costs[group] / top)
        self.coef = coef
        self.strength = strength

    def on_after_backward(self, state: TrainState) -> None:
        modules = dict(state.model.named_modules())
        with torch.no_grad():
            for name, c in self.coef.items():
                w = modules[name].weight
                if w.grad is not None:
                    w.grad.add_(self.strength * c.to(w.device) * torch.sign(w))

    def value(self, model: nn.Module) -> float:
        modules = dict(model.named_modules())
        return float(sum((c * modules[n].weight.detach().abs().cpu()).sum()
                         for n, c in self.coef.items()))  # fmt: skip


@dataclass
class MorphNetResult(Report):
    """The live fractions after shrinking, the expansion factor and the final policy."""

    alive: dict[str, float]
    factor: float
    ratios: dict[str, float]
    metric: str
    shrunk_cost: float
    final_cost: float
    original_cost: float
    history: list[dict[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def format(self) -> str:
        lines = [
            f"MorphNet: shrunk to {self.original_cost / self.shrunk_cost:.2f}x fewer "
            f"{self.metric}, expanded by {self.factor:.3f} to "
            f"{self.original_cost / self.final_cost:.2f}x fewer",
        ]
        width = max((len(n) for n in self.ratios), default=5)
        for n, r in self.ratios.items():
            lines.append(f"  {n:<{width}}  alive {100 * self.alive[n]:5.1f}%  "
                         f"kept {100 * (1 - r):5.1f}%")  # fmt: skip
        return "\n".join(lines)


def shrink(
    space: ChannelSpace,
    train: Any,
    *,
    strength: float = 1e-4,
    epochs: int = 2,
    lr: float = 0.01,
    threshold: float = 1e-2,
    metric: str = "flops",
    callbacks: Sequence[Callback] = (),
    **fit_options: Any,
) -> tuple[dict[str, float], list[dict[str, float]]]:
    """Train ``space.model`` in place under the FLOPs-weighted gamma penalty; returns each
    group's live fraction (channels whose largest ``|gamma|`` is at least ``threshold``; at
    least one per group; groups without BatchNorm stay whole) and the training history."""
    penalty = FlopsGammaPenalty(space, strength, metric)
    if not penalty.coef:
        raise ConfigError("MorphNet: no channel group has a BatchNorm scale to regularize")
    result = fit(space.model, train, epochs=epochs, lr=lr,
                 callbacks=[penalty, *callbacks], **fit_options)  # fmt: skip
    space.model.eval()
    modules = dict(space.model.named_modules())
    alive: dict[str, float] = {}
    for group, classes in bn_channels(space).items():
        if not any(classes):
            alive[group] = 1.0
            continue
        gammas = [max(float(modules[b].weight[i].detach().abs()) for b, i in members)
                  for members in classes if members]  # fmt: skip
        live = sum(1 for g in gammas if g >= threshold)
        alive[group] = max(live, 1) / len(classes)
    return alive, result.history


def expand(
    space: ChannelSpace, alive: dict[str, float], budget: Budget, iterations: int = 50
) -> tuple[float, dict[str, float]]:
    """The largest factor ``w`` with ``keep_g = min(1, w * alive_g)`` (removal capped at the
    space's ``max_ratio``) whose predicted cost meets ``budget``, and that policy."""
    if budget.measured:
        raise ConfigError("MorphNet: the budget must be flops, params or size")
    target = space.cost({}, budget.metric) / budget.reduction * (1 - 1e-4)

    def policy(w: float) -> dict[str, float]:
        return {g: min(space.max_ratio, max(0.0, 1.0 - min(1.0, w * alive[g])))
                for g in space.names}  # fmt: skip

    if space.cost(policy(0.0), budget.metric) > target:
        from squeezer.automation.search import require_reachable

        require_reachable(space, budget)  # raises with the closest reachable
    lo, hi = 0.0, 1.0 / max(min(alive.values()), 1e-9)
    if space.cost(policy(hi), budget.metric) <= target:
        return hi, policy(hi)
    for _ in range(iterations):
        mid = (lo + hi) / 2
        if space.cost(policy(mid), budget.metric) <= target:
            lo = mid
        else:
            hi = mid
    return lo, policy(lo)


def morphnet(
    model: nn.Module,
    example_inputs: torch.Tensor,
    train: Any,
    budget: Budget,
    *,
    strength: float = 1e-4,
    epochs: int = 2,
    lr: float = 0.01,
    threshold: float = 1e-2,
    max_ratio: float = 0.9,
    **fit_options: Any,
) -> tuple[nn.Module, MorphNetResult]:
    """Shrink ``model`` (trained in place under the penalty) and expand the survivors by one
    factor to ``budget``; returns the pruned model (channels chosen by ``|gamma|``) and what
    was decided. Fine-tune the returned model afterwards."""
    space = ChannelSpace(model, example_inputs, criterion="bn_scale", max_ratio=max_ratio)
    original = space.cost({}, budget.metric)
    alive, history = shrink(space, train, strength=strength, epochs=epochs, lr=lr,
                            threshold=threshold, metric=budget.metric, **fit_options)  # fmt: skip
    shrunk = space.cost({g: min(max_ratio, 1 - a) for g, a in alive.items()}, budget.metric)
    factor, ratios = expand(space, alive, budget)
    pruned = space.build(ratios)
    final = space.cost(ratios, budget.metric)
    return pruned, MorphNetResult(alive, factor, ratios, budget.metric, shrunk, final, original,
                                  history)  # fmt: skip
