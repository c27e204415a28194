"""The base of every factorization config, and what a conversion returns.

A config (``SVD``, ``Tucker``, ...) is a frozen dataclass: the rank spec plus which layers it
applies to. ``convert(layer, spec)`` returns a :class:`Conversion`: the block of plain PyTorch
layers that replaces ``layer``, the ranks chosen, and the weight the block stands for (used for
the relative reconstruction error).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from squeezer.config import check
from squeezer.core import LayerSelection, override
from squeezer.errors import ConfigError
from squeezer.factorization.rank import RankLike, RankSpec, parse_rank, select_ranks


@dataclass
class Conversion:
    """The result of converting one layer."""

    block: nn.Module
    ranks: list[int]
    approx_weight: Tensor | None  # the weight the block applies, in the layer's shape


@dataclass(frozen=True)
class Factorization(LayerSelection, ABC):
    """Fields shared by every method.

    Attributes:
        rank: rank spec (see :mod:`squeezer.factorization.rank`): int, fraction in (0, 1],
            ``"vbmf"``, ``"energy:E"``, ``"compression:C"`` or ``"flops:F"``.
        per_layer: layer name or pattern -> rank spec, overriding ``rank`` for that layer.
        force: convert even where the factorized block would not have fewer FLOPs.
        round_to: every rank a multiple of this (or the layer's full rank), as CPU kernels
            run multiples of 8 or 16 channels much faster; targets (``"flops:F"``) still hold.
        layers, exclude, layer_types: which layers (see :class:`squeezer.core.LayerSelection`;
            by default every layer of the types the method handles, subclasses included).
    """

    rank: RankLike = 0.5
    per_layer: dict[str, RankLike] = field(default_factory=dict)
    force: bool = False
    round_to: int = 1

    handles: ClassVar[tuple[type[nn.Module], ...]] = (nn.Conv2d,)
    method: ClassVar[str] = ""

    @property
    def types(self) -> tuple[str, ...]:
        return self.layer_types or tuple(t.__name__ for t in self.handles)

    def validate(self) -> None:
        super().validate()
        for name, spec in [("rank", self.rank), *self.per_layer.items()]:
            try:
                parse_rank(spec)
            except ConfigError as err:
                raise ConfigError(f"{type(self).__name__}: {name}: {err}") from None
        check(isinstance(self.force, bool), f"{type(self).__name__}: force must be true or false")
        check(
            isinstance(self.round_to, int) and not isinstance(self.round_to, bool)
            and self.round_to >= 1,
            f"{type(self).__name__}: round_to must be an integer >= 1",
        )  # fmt: skip

    def rank_for(self, name: str) -> RankSpec:
        return replace(
            parse_rank(override(self.per_layer, name, self.rank)), round_to=self.round_to
        )

    def eligible(self, module: nn.Module) -> str | None:
        """None if this method can convert ``module``, else why not."""
        if not isinstance(module, self.handles):
            return f"not a {' or '.join(t.__name__ for t in self.handles)}"
        if isinstance(module, nn.Conv2d):
            if module.groups != 1:
                return "grouped or depthwise convolution"
            if module.padding_mode != "zeros":
                return f"padding mode {module.padding_mode}"
            if isinstance(module.padding, str):
                return f"padding {module.padding!r}"
        return self._eligible(module)

    def _eligible(self, module: nn.Module) -> str | None:
        return None

    @abstractmethod
    def convert(self, module: nn.Module, spec: RankSpec) -> Conversion:
        """Replace ``module`` by a factorized block.

        Args:
            module: the layer (eligible, see :meth:`eligible`).
            spec: the parsed rank spec for this layer.
        """


def select(
    spec: RankSpec,
    unfoldings: list[np.ndarray | None],
    full: list[int],
    params: object,
    original_params: float,
    flops_per_pixel: object | None = None,
    original_flops_per_pixel: float | None = None,
) -> list[int]:
    """:func:`select_ranks` with cost functions given per output pixel (FLOPs)."""

    def cost(r: list[int]) -> tuple[float, float]:
        p = float(params(r))  # type: ignore[operator]
        f = float(flops_per_pixel(r)) if flops_per_pixel is not None else p  # type: ignore[operator]
        return p, f

    original = (
        original_params,
        original_flops_per_pixel if original_flops_per_pixel is not None else original_params,
    )
    return select_ranks(spec, unfoldings, full, cost, original)


def unfold(t: np.ndarray, mode: int) -> np.ndarray:
    """Mode-``mode`` unfolding: that mode's fibres as rows."""
    return np.moveaxis(t, mode, 0).reshape(t.shape[mode], -1)


def weight_array(module: nn.Module) -> np.ndarray:
    return module.weight.detach().double().cpu().numpy()


def to_param(array: np.ndarray, like: Tensor) -> nn.Parameter:
    return nn.Parameter(torch.as_tensor(np.ascontiguousarray(array)).to(like.dtype))


def conv_like(
    cin: int,
    cout: int,
    kernel: tuple[int, int],
    like: nn.Conv2d,
    *,
    stride: tuple[int, int] = (1, 1),
    padding: tuple[int, int] = (0, 0),
    dilation: tuple[int, int] = (1, 1),
    groups: int = 1,
    bias: bool = False,
) -> nn.Conv2d:
    conv = nn.Conv2d(cin, cout, kernel, stride, padding, dilation, groups=groups, bias=bias)
    return conv.to(dtype=like.weight.dtype, device=like.weight.device)


def copy_bias(dst: nn.Module, src: nn.Module) -> None:
    if getattr(src, "bias", None) is not None:
        with torch.no_grad():
            dst.bias.copy_(src.bias)


def pair(v: object) -> tuple[int, int]:
    return tuple(v) if isinstance(v, tuple) else (int(v), int(v))  # type: ignore[return-value]
