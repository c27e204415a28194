"""Structured-matrix replacements of Linear layers, for the walker and the command line.

Each config replaces the Linear layers it selects by a layer of :mod:`squeezer.layers` fit to
the trained weight by least squares (``fit=False`` keeps the random initialization, for
training from scratch). Their parameter counts are fixed by the structure: the rank spec only
matters for :class:`LDR`, where an absolute rank is the displacement rank.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from squeezer.config import check
from squeezer.errors import ConfigError
from squeezer.factorization.base import Conversion, Factorization
from squeezer.factorization.rank import RankLike, RankSpec, parse_rank
from squeezer.layers import ACDCLinear, CirculantLinear, FastfoodLinear, LDRLinear


@dataclass(frozen=True)
class _StructuredConfig(Factorization):
    rank: RankLike = 1  # unused except by LDR
    fit: bool = True
    seed: int = 0
    handles: ClassVar = (nn.Linear,)

    layer_cls: ClassVar[type[nn.Module]]

    def _layer(self, module: nn.Linear, spec: RankSpec) -> nn.Module:
        return self.layer_cls(
            module.in_features, module.out_features, module.bias is not None, seed=self.seed
        )

    def convert(self, module: nn.Module, spec: RankSpec) -> Conversion:
        assert isinstance(module, nn.Linear)
        torch.manual_seed(self.seed)
        layer = self._layer(module, spec).to(module.weight.dtype)
        if self.fit:
            layer.fit_weight_(module.weight.detach())  # type: ignore[operator]
            if module.bias is not None:
                with torch.no_grad():
                    layer.bias.copy_(module.bias)
        approx = layer.dense().detach()  # type: ignore[operator]
        return Conversion(layer, [], approx)


@dataclass(frozen=True)
class Circulant(_StructuredConfig):
    """Circulant projection (Cheng et al. 2015); fit in closed form."""

    method: ClassVar[str] = "circulant"
    layer_cls: ClassVar[type[nn.Module]] = CirculantLinear


@dataclass(frozen=True)
class Fastfood(_StructuredConfig):
    """Adaptive Fastfood (Yang et al. 2015); fit by alternating exact least squares."""

    method: ClassVar[str] = "fastfood"
    layer_cls: ClassVar[type[nn.Module]] = FastfoodLinear


@dataclass(frozen=True)
class LDR(_StructuredConfig):
    """Toeplitz-like low displacement rank (Sindhwani et al. 2015); ``rank`` is an int."""

    method: ClassVar[str] = "ldr"

    def validate(self) -> None:
        super().validate()
        for name, spec in [("rank", self.rank), *self.per_layer.items()]:
            if parse_rank(spec).kind != "absolute":
                raise ConfigError(f"LDR: {name} must be an int (the displacement rank): {spec}")

    def _layer(self, module: nn.Linear, spec: RankSpec) -> nn.Module:
        return LDRLinear(
            module.in_features, module.out_features, module.bias is not None, rank=int(spec.value)
        )


@dataclass(frozen=True)
class ACDC(_StructuredConfig):
    """ACDC cascade (Moczulski et al. 2016) of ``depth`` A C D C^-1 factors."""

    depth: int = 4
    method: ClassVar[str] = "acdc"

    def validate(self) -> None:
        super().validate()
        check(self.depth >= 1, "ACDC: depth must be >= 1")

    def _layer(self, module: nn.Linear, spec: RankSpec) -> nn.Module:
        return ACDCLinear(
            module.in_features,
            module.out_features,
            module.bias is not None,
            depth=self.depth,
            seed=self.seed,
        )
