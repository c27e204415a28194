"""Small building blocks that compressed layers are assembled from."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from squeezer.core.spec import register_layer


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
