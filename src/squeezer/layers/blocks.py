"""Small building blocks that compressed layers are assembled from."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from squeezer.core.spec import register_block, register_layer


@register_layer
class ChannelSelect(nn.Module):
    """Pick (and reorder or repeat) channels: ``y[:, i] = x[:, index[i]]`` on dimension 1."""

    def __init__(self, index: Sequence[int]) -> None:
        super().__init__()
        self.register_buffer("index", torch.as_tensor(list(index), dtype=torch.long))

    def spec_args(self) -> dict[str, Any]:
        return {"index": [int(i) for i in self.index]}

    def extra_repr(self) -> str:
        return f"channels={len(self.index)}"

    def forward(self, x: Tensor) -> Tensor:
        return x.index_select(1, self.index)


class _FactorizedBlock(nn.Sequential):
    """A sequence of factor layers standing in for one layer, keeping the replaced layer's
    geometry as attributes: models that read ``layer.stride`` or ``layer.weight.dtype``
    (Hugging Face's MobileNetV2 and ViT do) keep working with the block in its place."""

    _geometry: tuple[str, ...] = ()

    def __init__(self, *layers: nn.Module, **geometry: Any) -> None:
        super().__init__(*layers)
        for name in self._geometry:
            value = geometry[name]
            setattr(self, name, tuple(value) if isinstance(value, list) else value)

    def spec_args(self) -> dict[str, Any]:
        return {n: list(v) if isinstance(v, tuple) else v for n, v in self.geometry().items()}

    def geometry(self) -> dict[str, Any]:
        return {n: getattr(self, n) for n in self._geometry}

    @property
    def weight(self) -> Tensor:
        """The first factor's weight (for dtype and device reads; not the layer's weight)."""
        return next(m for m in self if isinstance(getattr(m, "weight", None), Tensor)).weight

    def __getitem__(self, idx: Any) -> Any:
        if isinstance(idx, slice):  # a slice is a plain Sequential of those factors
            return nn.Sequential(*list(self)[idx])
        return super().__getitem__(idx)


@register_block
class FactorizedConv2d(_FactorizedBlock):
    """Factor layers replacing an ``nn.Conv2d``, with its geometry."""

    _geometry = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation")

    @classmethod
    def wrap(cls, block: nn.Sequential, conv: nn.Conv2d) -> FactorizedConv2d:
        return cls(
            *block,
            in_channels=conv.in_channels,
            out_channels=conv.out_channels,
            kernel_size=tuple(conv.kernel_size),
            stride=tuple(conv.stride),
            padding=conv.padding if isinstance(conv.padding, str) else tuple(conv.padding),
            dilation=tuple(conv.dilation),
        )


@register_block
class FactorizedLinear(_FactorizedBlock):
    """Factor layers replacing an ``nn.Linear``, with its feature counts."""

    _geometry = ("in_features", "out_features")

    @classmethod
    def wrap(cls, block: nn.Sequential, linear: nn.Linear) -> FactorizedLinear:
        return cls(*block, in_features=linear.in_features, out_features=linear.out_features)
