"""Static counts of a model: parameters, non-zeros, FLOPs and stored bytes, per layer."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from squeezer.core import type_name
from squeezer.core.inputs import Inputs, as_tuple


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


def _own_tensors(module: nn.Module) -> Iterator[Tensor]:
    yield from module.parameters(recurse=False)
    yield from module.buffers(recurse=False)


def _is_sparse(t: Tensor) -> bool:
    return t.layout != torch.strided


def _weights(module: nn.Module, recurse: bool = True) -> list[Tensor]:
    """Parameters, plus sparse weight buffers (a CSR layer's weight is still a weight)."""
    params = list(module.parameters(recurse=recurse))
    sparse = [b for b in module.buffers(recurse=recurse) if _is_sparse(b)]
    return params + sparse


def _nonzero(t: Tensor) -> int:
    if _is_sparse(t):
        return int(torch.count_nonzero(t.values()))
    return int(torch.count_nonzero(t.detach()))


def _nbytes(t: Tensor) -> int:
    if t.layout == torch.sparse_csr:
        parts = (t.values(), t.col_indices(), t.crow_indices())
        return sum(p.numel() * p.element_size() for p in parts)
    if _is_sparse(t):
        t = t.coalesce()
        return sum(p.numel() * p.element_size() for p in (t.values(), t.indices()))
    return t.numel() * t.element_size()


def count_params(model: nn.Module) -> int:
    """Number of parameters (shared ones counted once; a sparse weight counts its full shape)."""
    return sum(p.numel() for p in _weights(model))


def count_nonzero(model: nn.Module) -> int:
    """Number of parameters that are not exactly zero."""
    return sum(_nonzero(p) for p in _weights(model))


def size_bytes(model: nn.Module) -> int:
    """Bytes of every parameter and buffer as held in memory (sparse ones in their format)."""
    seen: set[int] = set()
    total = 0
    for t in [*model.parameters(), *model.buffers()]:
        if id(t) not in seen:
            seen.add(id(t))
            total += _nbytes(t)
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
    # torch's counter has no formula for sparse products: count 2 FLOPs per stored weight
    # and input row for layers holding a sparse weight.
    sparse_flops: dict[str, int] = {}
    hooks = []
    # Structured-matrix layers (FFT, Walsh-Hadamard) state their own per-row count, as the
    # counter has no formulas for FFTs either.
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if isinstance(weight, Tensor) and _is_sparse(weight):

            def hook(m: nn.Module, args: tuple, _out: object, name: str = name) -> None:
                rows = args[0].numel() // args[0].shape[-1]
                sparse_flops[name] = 2 * rows * _nonzero(m.weight)

            hooks.append(module.register_forward_hook(hook))
        elif callable(getattr(module, "flops_per_row", None)):

            def analytic(m: nn.Module, args: tuple, _out: object, name: str = name) -> None:
                rows = args[0].numel() // args[0].shape[-1]
                sparse_flops[name] = rows * int(m.flops_per_row())

            hooks.append(module.register_forward_hook(analytic))
    was_training = model.training
    model.eval()
    try:
        with counter:
            model(*as_tuple(inputs))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    root = type(model).__name__
    per_module: dict[str, int] = dict(sparse_flops)
    for key, ops in counter.get_flop_counts().items():
        if key == "Global":
            continue
        name = "" if key == root else key[len(root) + 1 :] if key.startswith(root + ".") else key
        per_module[name] = int(sum(ops.values())) + sparse_flops.get(name, 0)
    for name in sparse_flops:  # containers include their children's work
        parts = name.split(".")
        for i in range(len(parts)):
            parent = ".".join(parts[:i])
            if parent in per_module or parent == "":
                per_module[parent] = per_module.get(parent, 0) + sparse_flops[name]
    return int(counter.get_total_flops()) + sum(sparse_flops.values()), per_module


def layer_counts(model: nn.Module, module_flops: dict[str, int]) -> list[LayerCounts]:
    """Per-layer rows: every leaf module, plus containers that own tensors themselves."""
    rows = []
    for name, module in model.named_modules():
        own = list(_own_tensors(module))
        is_leaf = next(module.children(), None) is None
        flops = module_flops.get(name, 0)
        if not own and not is_leaf:
            continue
        params = _weights(module, recurse=False)
        rows.append(
            LayerCounts(
                name=name or "(root)",
                type=type_name(module),
                params=sum(p.numel() for p in params),
                nonzero_params=sum(_nonzero(p) for p in params),
                # a container's FLOPs include its children's: only leaves carry their own
                flops=flops if is_leaf else 0,
                size_bytes=sum(_nbytes(t) for t in own),
            )
        )
    return rows
