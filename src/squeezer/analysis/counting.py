"""Static counts of a model: parameters, non-zeros, FLOPs and stored bytes, per layer."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from squeezer.surgery import type_name

Inputs = Tensor | tuple[Tensor, ...]


@dataclass
class LayerCounts:
    """Counts for one module that owns parameters or does work (a leaf, usually)."""

    name: str
    type: str
    params: int = 0
    nonzero_params: int = 0
    flops: int = 0
    size_bytes: int = 0
    latency_ms: float | None = None


def as_tuple(inputs: Inputs) -> tuple[Tensor, ...]:
    return inputs if isinstance(inputs, tuple) else (inputs,)


def batch_of(inputs: Inputs, batch_size: int) -> tuple[Tensor, ...]:
    """The first example of each input tensor, repeated ``batch_size`` times along dim 0."""
    return tuple(t[:1].expand(batch_size, *t.shape[1:]).contiguous() for t in as_tuple(inputs))


def _own_tensors(module: nn.Module) -> Iterator[Tensor]:
    yield from module.parameters(recurse=False)
    yield from module.buffers(recurse=False)


def count_params(model: nn.Module) -> int:
    """Number of parameters (shared parameters counted once)."""
    return sum(p.numel() for p in model.parameters())


def count_nonzero(model: nn.Module) -> int:
    """Number of parameters that are not exactly zero."""
    return sum(int(torch.count_nonzero(p.detach())) for p in model.parameters())


def size_bytes(model: nn.Module) -> int:
    """Bytes of every parameter and buffer at its stored dtype (what a ``state_dict`` holds)."""
    seen: set[int] = set()
    total = 0
    for t in [*model.parameters(), *model.buffers()]:
        if id(t) not in seen:
            seen.add(id(t))
            total += t.numel() * t.element_size()
    return total


@torch.no_grad()
def count_flops(model: nn.Module, inputs: Inputs) -> tuple[int, dict[str, int]]:
    """FLOPs of one forward pass, total and per module, with ``torch.utils.flop_counter``.

    A multiply-accumulate counts as 2 FLOPs; element-wise work (bias, ReLU, pooling) is not
    counted, as in the compression literature.

    Returns:
        ``(total, {module_name: flops})`` where names are as in ``model.named_modules()``.
    """
    counter = FlopCounterMode(display=False)
    was_training = model.training
    model.eval()
    try:
        with counter:
            model(*as_tuple(inputs))
    finally:
        model.train(was_training)
    root = type(model).__name__
    per_module: dict[str, int] = {}
    for key, ops in counter.get_flop_counts().items():
        if key == "Global":
            continue
        name = "" if key == root else key[len(root) + 1 :] if key.startswith(root + ".") else key
        per_module[name] = int(sum(ops.values()))
    return int(counter.get_total_flops()), per_module


def layer_counts(model: nn.Module, module_flops: dict[str, int]) -> list[LayerCounts]:
    """Per-layer rows: every leaf module, plus containers that own tensors themselves."""
    rows = []
    for name, module in model.named_modules():
        own = list(_own_tensors(module))
        is_leaf = next(module.children(), None) is None
        flops = module_flops.get(name, 0)
        if not own and not is_leaf:
            continue
        params = list(module.parameters(recurse=False))
        rows.append(
            LayerCounts(
                name=name or "(root)",
                type=type_name(module),
                params=sum(p.numel() for p in params),
                nonzero_params=sum(int(torch.count_nonzero(p.detach())) for p in params),
                # a container's FLOPs include its children's: only leaves carry their own
                flops=flops if is_leaf else 0,
                size_bytes=sum(t.numel() * t.element_size() for t in own),
            )
        )
    return rows
