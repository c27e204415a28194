"""Data-free merging of similar fully connected neurons (Srinivas & Babu 2015).

Two neurons of a hidden fc layer with the same incoming weights compute the same activation,
so one can be removed if the next layer's weights of the removed neuron are added to those of
its twin. For neurons that are only similar, removing neuron j into neuron i costs about
s(i, j) = ||a_j||^2 ||w_i - w_j||^2, where w are incoming weights (bias included) and a_j are
j's outgoing weights. Pairs are merged greedily by lowest cost, the twin's outgoing weights
accumulating those of the neurons merged into it. No data is needed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from squeezer.pruning.criteria.base import Batches, Criterion, Groups, register_criterion
from squeezer.surgery import ChannelClass, ChannelGraph, ChannelPlan


def _fc_pair(model: nn.Module, classes: Sequence[ChannelClass]) -> tuple[str, str] | None:
    """(producer, consumer) if the group is one Linear feeding one Linear, else None."""
    producers, consumers = set(), set()
    for c in classes:
        for b, _ in c.members:
            if b.kind == "out":
                producers.add(b.module)
            elif b.kind == "in":
                consumers.add(b.module)
            else:
                return None
    if len(producers) != 1 or len(consumers) != 1:
        return None
    p, q = producers.pop(), consumers.pop()
    if not (
        isinstance(model.get_submodule(p), nn.Linear)
        and isinstance(model.get_submodule(q), nn.Linear)
    ):
        return None
    return p, q


def merge_order(
    incoming: np.ndarray, outgoing: np.ndarray, n_remove: int
) -> tuple[list[int], np.ndarray]:
    """Greedy merges: the neurons removed in order, and the compensated outgoing weights.

    Args:
        incoming: ``(neurons, fan_in)`` incoming weights (bias as a last column).
        outgoing: ``(fan_out, neurons)`` the next layer's weights.
        n_remove: how many neurons to merge away.
    """
    out = outgoing.astype(np.float64).copy()
    alive = list(range(incoming.shape[0]))
    diff = ((incoming[:, None, :] - incoming[None, :, :]) ** 2).sum(-1)
    removed = []
    for _ in range(min(n_remove, len(alive) - 1)):
        idx = np.array(alive)
        a2 = (out[:, idx] ** 2).sum(0)  # ||a_j||^2 of each candidate j
        cost = diff[np.ix_(idx, idx)] * a2[None, :]
        np.fill_diagonal(cost, np.inf)
        i, j = np.unravel_index(int(np.argmin(cost)), cost.shape)
        keep, gone = int(idx[i]), int(idx[j])
        out[:, keep] += out[:, gone]
        removed.append(gone)
        alive.remove(gone)
    return removed, out


@register_criterion
class NeuronMerging(Criterion):
    """Srinivas & Babu 2015: merge the most similar neurons of an fc layer feeding one fc
    layer, folding the removed neuron's outgoing weights into its twin. Only such groups are
    pruned; data-free."""

    name: ClassVar[str] = "merge"
    summary: ClassVar[str] = "merge similar fc neurons, data-free (Srinivas & Babu 2015)"

    def __init__(self) -> None:
        self.ratios: dict[str, float] = {}
        self.compensation: dict[str, tuple[np.ndarray, list[int]]] = {}

    def eligible(self, model: nn.Module, classes: list[ChannelClass]) -> bool:
        return _fc_pair(model, classes) is not None

    def budget(self, ratios: Mapping[frozenset[str], float]) -> None:
        self.ratios = {p: r for producers, r in ratios.items() for p in producers}

    def score(
        self, model: nn.Module, graph: ChannelGraph, groups: Groups, data: Batches | None
    ) -> dict[int, float]:
        scores: dict[int, float] = {}
        self.compensation = {}
        for classes in groups.values():
            for c in classes:
                scores.setdefault(c.root, math.inf)
            pair = _fc_pair(model, classes)
            if pair is None:
                continue
            producer, consumer = pair
            p, q = model.get_submodule(producer), model.get_submodule(consumer)
            w_in = p.weight.detach().double().numpy()
            if p.bias is not None:
                w_in = np.concatenate([w_in, p.bias.detach().double().numpy()[:, None]], axis=1)
            n_remove = math.floor(self.ratios.get(producer, 0.0) * w_in.shape[0] + 1e-9)
            if n_remove <= 0:
                continue
            removed, out = merge_order(w_in, q.weight.detach().double().numpy(), n_remove)
            index_of = {i: c for c in classes for b, i in c.members if b.module == producer}
            for rank, neuron in enumerate(removed):
                scores[index_of[neuron].root] = float(rank)
            self.compensation[consumer] = (out, removed)
        return scores

    def compensate(self, original: nn.Module, pruned: nn.Module, plan: ChannelPlan) -> None:
        with torch.no_grad():
            for consumer, (out, removed) in self.compensation.items():
                keep = np.setdiff1d(np.arange(out.shape[1]), removed)
                rows = plan.keep.get((consumer, "out"))
                kept = out[rows] if rows is not None else out  # the consumer may lose rows too
                layer = pruned.get_submodule(consumer)
                layer.weight.copy_(torch.from_numpy(kept[:, keep]).to(layer.weight.dtype))
