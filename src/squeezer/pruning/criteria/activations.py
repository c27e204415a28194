"""Data-driven channel criteria, measured on activations.

- ``taylor``: first-order Taylor estimate of the loss change when a channel is removed,
  |mean over positions of activation x gradient|, averaged over examples (Molchanov et al.
  2017, "Pruning Convolutional Neural Networks for Resource Efficient Inference").
- ``energy``: mean squared activation.
- ``apoz``: one minus the average percentage of zeros after the ReLU (Hu et al. 2016,
  "Network Trimming"); a channel that is almost always zero scores low.

Activations are observed where a channel's value is final before the next layer: at the
output of the BatchNorm layers bound to the channel, or at its producing layer if there is
none. A class's score is the mean over its observation points.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from squeezer.errors import ConfigError, ModelError
from squeezer.pruning.criteria.base import Batches, Criterion, Groups, register_criterion
from squeezer.surgery import ChannelClass, ChannelGraph

DATA_CRITERIA = ("taylor", "energy", "apoz")


def activation_scores(
    model: nn.Module,
    classes: list[ChannelClass],
    data: Iterable[tuple[Tensor, Tensor]],
    kind: str,
    max_batches: int = 8,
) -> dict[int, float]:
    """Score each class (by root) from activations over up to ``max_batches`` batches."""
    if kind not in DATA_CRITERIA:
        raise ConfigError(f"unknown data criterion {kind!r}")
    points: dict[str, list[tuple[int, int]]] = defaultdict(list)  # module -> (root, channel)
    for c in classes:
        bns = [(b.module, i) for b, i in c.members if b.kind == "bn"]
        observed = bns or [(b.module, i) for b, i in c.members if b.kind in ("out", "dw")]
        for module, i in observed:
            points[module].append((c.root, i))
    sums: dict[str, Tensor] = {}
    outputs: dict[str, Tensor] = {}
    count = 0

    def hook(name: str):
        def record(_m: nn.Module, _a: object, out: Tensor) -> None:
            if kind == "taylor":
                out.retain_grad()
                outputs[name] = out
                return
            x = out.detach()
            dims = [d for d in range(x.ndim) if d != 1]
            stat = (x**2).mean(dims) if kind == "energy" else (F.relu(x) > 0).float().mean(dims)
            sums[name] = sums.get(name, 0) + stat * x.shape[0]

        return record

    handles = [model.get_submodule(n).register_forward_hook(hook(n)) for n in points]
    was = model.training
    model.eval()
    try:
        for step, (x, y) in enumerate(data):
            if step >= max_batches:
                break
            if kind == "taylor":
                model.zero_grad(set_to_none=True)
                loss = F.cross_entropy(model(x), y)
                loss.backward()
                for name, out in outputs.items():
                    g = out.grad
                    if g is None:
                        continue
                    prod = out.detach() * g
                    if prod.ndim > 2:
                        prod = prod.flatten(2).mean(2)
                    sums[name] = sums.get(name, 0) + prod.abs().sum(0)
                outputs.clear()
            else:
                with torch.no_grad():
                    model(x)
            count += int(x.shape[0])
    finally:
        for h in handles:
            h.remove()
        model.zero_grad(set_to_none=True)
        model.train(was)
    if count == 0:
        raise ModelError("the data for a data-driven criterion holds no examples")
    per_root: dict[int, list[float]] = defaultdict(list)
    for name, entries in points.items():
        stat = (sums[name] / count).numpy() if name in sums else None
        for root, i in entries:
            if stat is not None:
                per_root[root].append(float(stat[i]))
    return {c.root: float(np.mean(per_root[c.root])) if per_root[c.root] else 0.0 for c in classes}


class _Activation(Criterion):
    needs_data: ClassVar[bool] = True
    max_batches: ClassVar[int] = 8

    def score(
        self, model: nn.Module, graph: ChannelGraph, groups: Groups, data: Batches | None
    ) -> dict[int, float]:
        if data is None:
            raise ConfigError(f"criterion {self.name!r} needs data=batches of (inputs, targets)")
        every = [c for cs in groups.values() for c in cs]
        return activation_scores(model, every, data, self.name, self.max_batches)


@register_criterion
class Taylor(_Activation):
    name: ClassVar[str] = "taylor"
    summary: ClassVar[str] = "first-order Taylor loss change |a * dL/da| (Molchanov et al. 2017)"


@register_criterion
class Energy(_Activation):
    name: ClassVar[str] = "energy"
    summary: ClassVar[str] = "mean squared activation"


@register_criterion
class APoZ(_Activation):
    name: ClassVar[str] = "apoz"
    summary: ClassVar[str] = "one minus the average percentage of zeros after ReLU (Hu et al. 2016)"
