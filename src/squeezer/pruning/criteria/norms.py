"""Weight-based channel criteria: filter norms (Li et al. 2017) and BatchNorm scales (Liu et
al. 2017, network slimming). Data-free."""

from __future__ import annotations

from abc import abstractmethod
from typing import ClassVar

import numpy as np
from torch import nn

from squeezer.pruning.criteria.base import Batches, Criterion, Groups, register_criterion
from squeezer.surgery import ChannelClass, ChannelGraph


def filter_norm(model: nn.Module, c: ChannelClass, p: int = 1, cache: dict | None = None) -> float:
    """Mean Lp norm per weight of the filters producing the channel (Li et al. 2017).

    ``cache`` (a dict kept across the calls of one scoring) holds each layer's row norms, so
    a model of thousands of channels reads each weight once.
    """
    cache = {} if cache is None else cache
    norms = []
    for b, i in c.members:
        if b.kind in ("out", "dw"):
            key = (b.module, p)
            if key not in cache:
                w = model.get_submodule(b.module).weight.detach().flatten(1)
                cache[key] = w.abs().pow(p).mean(1).pow(1 / p).double().numpy()
            norms.append(float(cache[key][i]))
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
        self._cache: dict = {}  # per-layer norms, read once per scoring
        try:
            return {c.root: self.value(model, c) for cs in groups.values() for c in cs}
        finally:
            self._cache = {}


@register_criterion
class L1(_PerClass):
    name: ClassVar[str] = "l1"
    summary: ClassVar[str] = "mean |w| of the channel's filters (Li et al. 2017)"

    def value(self, model: nn.Module, c: ChannelClass) -> float:
        return filter_norm(model, c, 1, getattr(self, "_cache", None))


@register_criterion
class L2(_PerClass):
    name: ClassVar[str] = "l2"
    summary: ClassVar[str] = "root mean square of the channel's filters"

    def value(self, model: nn.Module, c: ChannelClass) -> float:
        return filter_norm(model, c, 2, getattr(self, "_cache", None))


@register_criterion
class BNScale(_PerClass):
    name: ClassVar[str] = "bn_scale"
    summary: ClassVar[str] = "|gamma| of the channel's BatchNorm (Liu et al. 2017)"

    def value(self, model: nn.Module, c: ChannelClass) -> float:
        return bn_scale(model, c)
