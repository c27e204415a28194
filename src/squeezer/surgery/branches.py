"""Removing whole residual blocks whose branch has been zeroed (Wen et al. 2016's depth
regularization, via :class:`squeezer.pruning.GroupLasso` with ``branches=``).

A block computing relu(x + branch(x)) with an all-zero branch is the identity on its
non-negative inputs (the output of a previous ReLU). Such a block is replaced by
``nn.Identity`` only when three checks agree: it returns its input exactly on the inputs it
sees in the model, it does so on random non-negative probes of the same shape, and the whole
model's output is unchanged afterwards. The replacement is recorded like any other surgery,
so the shallower model saves and loads.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from squeezer.core.arch import record
from squeezer.core.modules import set_module


def _is_identity(block: nn.Module, seen: Tensor, probes: int = 3) -> bool:
    if seen.min() < 0:
        return False
    gen = torch.Generator().manual_seed(0)
    trials = [seen] + [
        torch.rand(seen.shape, generator=gen) * (seen.abs().max() + 1) for _ in range(probes)
    ]
    with torch.no_grad():
        return all(torch.equal(block(t), t) for t in trials)


def remove_identity_blocks(
    model: nn.Module, example_inputs: Tensor | tuple[Tensor, ...]
) -> tuple[nn.Module, list[str]]:
    """A copy of ``model`` without the residual blocks that compute the identity.

    Returns:
        ``(model, names of the blocks removed)``.
    """
    inputs = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
    pruned = copy.deepcopy(model).eval()
    seen: dict[str, list[Tensor]] = {}
    handles = []
    for name, m in pruned.named_modules():
        if name and next(m.children(), None) is not None:  # containers only: blocks, stages
            handles.append(
                m.register_forward_pre_hook(
                    lambda _m, a, name=name: seen.setdefault(name, []).append(a[0].detach())
                )
            )
    with torch.no_grad():
        reference = pruned(*inputs)
    for h in handles:
        h.remove()
    removed: list[str] = []
    for name, calls in seen.items():
        if len(calls) != 1 or any(name.startswith(r + ".") for r in removed):
            continue
        block = pruned.get_submodule(name)
        if isinstance(block, nn.Sequential) or not _is_identity(block, calls[0]):
            continue
        set_module(pruned, name, nn.Identity())
        with torch.no_grad():
            if not torch.equal(pruned(*inputs), reference):
                set_module(pruned, name, block)
                continue
        removed.append(name)
    record(pruned, [{"module": n, "type": "Identity"} for n in removed])
    pruned.train(model.training)
    return pruned, removed
