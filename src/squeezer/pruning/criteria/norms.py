"""Weight-based channel criteria: filter norms (Li et al. 2017) and BatchNorm scales (Liu et
al. 2017, network slimming). Data-free."""

from __future__ import annotations

from abc import abstractmethod
from typing import ClassVar

import numpy as np
from torch import nn

from squeezer.pruning.criteria.base import Batches, Criterion, Groups, register_criterion
from squeezer.surgery import ChannelClass, ChannelGraph


def filter_norm(model: nn.Module, c: ChannelClass, p: int = 1) -> float:
    """Mean Lp norm per weight of the filters producing the channel (Li et al. 2017)."""
    norms = []
    for b, i in c.members:
        if b.kind in ("out", "dw"):
            w = model.get_submodule(b.module).weight.detach()[i]
            norms.append(float(w.abs().pow(p).mean().pow(1 / p)))
    return float(np.mean(norms)) if norms else 0.0


def bn_scale(model: nn.Module, c: ChannelClass) -> float:
    """Mean |gamma| of the BatchNorm layers on the channel (network slimming, Liu et al. 2017);
    the filter L1 norm where the channel has no BatchNorm."""
    scales = [
        abs(float(model.get_submodule(b.module).weight.detach()[i]))
        for b, i in c.members
        if b.kind == "bn" and model.get_submodule(b.module).weight is not None
    ]
    return float(np.mean(scales)) if scales else filter_norm(model, c)


class _PerClass(Criterion):
    """A criterion that scores each channel class on its own."""

    @abstractmethod
    def value(self, model: nn.Module, c: ChannelClass) -> float:
        """The score of class ``c``."""

    def score(
        self, model: nn.Module, graph: ChannelGraph, groups: Groups, data: Batches | None
    ) -> dict[int, float]:
        return {c.root: self.value(model, c) for cs in groups.values() for c in cs}


@register_criterion
class L1(_PerClass):
    name: ClassVar[str] = "l1"
    summary: ClassVar[str] = "mean |w| of the channel's filters (Li et al. 2017)"

    def value(self, model: nn.Module, c: ChannelClass) -> float:
        return filter_norm(model, c, 1)


@register_criterion
class L2(_PerClass):
    name: ClassVar[str] = "l2"
    summary: ClassVar[str] = "root mean square of the channel's filters"

    def value(self, model: nn.Module, c: ChannelClass) -> float:
        return filter_norm(model, c, 2)


@register_criterion
class BNScale(_PerClass):
    name: ClassVar[str] = "bn_scale"
    summary: ClassVar[str] = "|gamma| of the channel's BatchNorm (Liu et al. 2017)"

    def value(self, model: nn.Module, c: ChannelClass) -> float:
        return bn_scale(model, c)
