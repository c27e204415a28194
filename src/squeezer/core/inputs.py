"""Example inputs: one tensor or a tuple of them, and a batch made from the first example."""

from __future__ import annotations

from torch import Tensor

Inputs = Tensor | tuple[Tensor, ...]


def as_tuple(inputs: Inputs) -> tuple[Tensor, ...]:
    return inputs if isinstance(inputs, tuple) else (inputs,)


def batch_of(inputs: Inputs, batch_size: int) -> tuple[Tensor, ...]:
    """The first example of each input tensor, repeated ``batch_size`` times along dim 0."""
    return tuple(t[:1].expand(batch_size, *t.shape[1:]).contiguous() for t in as_tuple(inputs))
