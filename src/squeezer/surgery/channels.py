"""Physically removing channel groups: a plain, smaller ``nn.Module``.

:func:`plan_channels` takes a score per removable channel class of a :class:`ChannelGraph`
(computed by a criterion of :mod:`squeezer.pruning.criteria`) and picks the weakest per layer
group; :func:`apply_plan` rebuilds the touched ``Conv2d``,
``BatchNorm`` and ``Linear`` modules with fewer channels and copies the kept weights. The
edits are recorded on the model (``squeezer_arch["surgery"]``) so a saved file rebuilds the
smaller architecture without anyone replaying the pruning.
"""

from __future__ import annotations

import copy
import functools
import math
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from squeezer.core.arch import record, replacement
from squeezer.core.modules import resized, set_module
from squeezer.core.select import override
from squeezer.errors import ConfigError
from squeezer.surgery.graph import Binding, ChannelGraph, SurgeryError

# A score function rates each channel class from the tensors bound to it (higher = keep).
ScoreFn = Callable[[nn.Module, "ChannelClass"], float]


@dataclass
class ChannelClass:
    """One set of coupled channels: removing it edits every ``(binding, index)`` listed."""

    root: int
    members: list[tuple[Binding, int]] = field(default_factory=list)

    @functools.cached_property
    def producers(self) -> frozenset[str]:
        """The layers producing these channels (read once the members are all listed)."""
        return frozenset(b.module for b, _ in self.members if b.kind in ("out", "dw"))


@dataclass
class ChannelPlan:
    """Which channel classes to remove, and per binding which indices to keep."""

    graph: ChannelGraph
    removed: list[ChannelClass]
    keep: dict[tuple[str, str], np.ndarray]  # (module, kind) -> boolean mask
    groups: list[dict[str, Any]]

    def removed_slots(self) -> set[int]:
        roots = self.graph.root_array()
        return {int(roots[b.slots[i]]) for c in self.removed for b, i in c.members}


def channel_classes(graph: ChannelGraph) -> list[ChannelClass]:
    """The removable channel classes of ``graph`` (not locked, with a producer)."""
    locked = graph.locked_roots()
    by_root: dict[int, ChannelClass] = {}
    every = graph.root_array()
    for b in graph.bindings:
        for i, root in enumerate(every[b.slots].tolist()):
            if root in locked:
                continue
            by_root.setdefault(root, ChannelClass(root)).members.append((b, i))
    return [c for c in by_root.values() if c.producers]


def coupled_groups(
    graph: ChannelGraph, selected: Callable[[str], bool] | None = None
) -> dict[frozenset[str], list[ChannelClass]]:
    """The removable channel classes grouped by the layers producing them; with ``selected``,
    only groups whose every producer it accepts."""
    groups: dict[frozenset[str], list[ChannelClass]] = defaultdict(list)
    for c in channel_classes(graph):
        if selected is not None and not all(selected(p) for p in c.producers):
            continue
        groups[c.producers].append(c)
    return dict(groups)


def plan_channels(
    model: nn.Module,
    example_inputs: Tensor | tuple[Tensor, ...],
    ratio: float | Mapping[str, float] = 0.5,
    scores: Mapping[int, float] | ScoreFn | None = None,
    *,
    per_layer: Mapping[str, float] | None = None,
    selected: Callable[[str], bool] | None = None,
    round_to: int = 1,
    scope: str = "layer",
    threshold: float | None = None,
    graph: ChannelGraph | None = None,
) -> ChannelPlan:
    """Choose the channel classes to remove, from given scores (the mechanism; criteria,
    which compute the scores, live in :mod:`squeezer.pruning.criteria`).

    Args:
        model: the network.
        example_inputs: inputs for tracing.
        ratio: fraction of each layer group's channels to remove (a mapping is read as
            ``per_layer`` with a default of 0).
        scores: a score per class root (higher = keep), or a function of ``(model, class)``.
        per_layer: layer name or pattern -> ratio for the groups that layer produces (a group
            takes the largest ratio of its producers).
        selected: which producing layers may lose channels (default: all).
        round_to: keep a multiple of this many channels in each group.
        scope: ``"layer"`` removes ``ratio`` of every group; ``"global"`` ranks all channels
            of the model together and removes the lowest ``ratio`` overall (as network
            slimming does with BatchNorm scales), keeping at least ``round_to`` per group.
        threshold: instead of a ratio, remove every channel scoring below this (e.g. the
            filters a group-lasso penalty drove to zero), keeping at least one per group.
        graph: a :class:`ChannelGraph` of ``model`` already built (saves tracing twice).
    """
    if scope not in ("layer", "global"):
        raise ConfigError("scope must be 'layer' or 'global'")
    if isinstance(ratio, Mapping):
        per_layer, ratio = {**ratio, **(per_layer or {})}, 0.0
    graph = graph if graph is not None else ChannelGraph(model, example_inputs)
    groups = coupled_groups(graph, selected)
    every = [c for cs in groups.values() for c in cs]
    if scores is None:
        raise ConfigError("plan_channels needs scores (see squeezer.pruning.criteria)")
    if callable(scores):
        score_fn = scores
        scores = {c.root: score_fn(model, c) for c in every}
    removed: list[ChannelClass] = []
    report = []
    ordered = sorted(groups.items(), key=lambda kv: sorted(kv[0]))
    if threshold is not None:
        for producers, classes in ordered:
            weak = [c for c in classes if scores[c.root] < threshold]
            if len(weak) == len(classes):  # keep the strongest one: a layer needs a channel
                weak.remove(max(weak, key=lambda c: scores[c.root]))
            removed += weak
            report.append(
                {
                    "layers": sorted(producers),
                    "channels": len(classes),
                    "kept": len(classes) - len(weak),
                }
            )
    elif scope == "global":
        budget = math.floor(float(ratio) * len(every))
        floor = {k: min(len(v), max(1, round_to)) for k, v in ordered}
        left = {k: len(v) for k, v in ordered}
        by_score = sorted(
            ((scores[c.root], i, k, c) for k, cs in ordered for i, c in enumerate(cs)),
            key=lambda t: (t[0], t[1]),
        )
        for _, _, k, c in by_score:
            if budget <= 0:
                break
            if left[k] > floor[k]:
                removed.append(c)
                left[k] -= 1
                budget -= 1
        report = [{"layers": sorted(k), "channels": len(v), "kept": left[k]} for k, v in ordered]
    else:
        for producers, classes in ordered:
            r = group_ratio(ratio, per_layer or {}, producers)
            n = len(classes)
            keep = max(1, math.floor((1 - r) * n + 1e-9))  # at least ratio of them go
            if round_to > 1:
                keep = min(n, max(round_to, math.ceil(keep / round_to) * round_to))
            if keep >= n:
                continue
            order = np.argsort(np.asarray([scores[c.root] for c in classes]), kind="stable")
            removed += [classes[i] for i in order[: n - keep]]
            report.append({"layers": sorted(producers), "channels": n, "kept": keep})
    removed_roots = {c.root for c in removed}
    every = graph.root_array()
    keep_masks: dict[tuple[str, str], np.ndarray] = {}
    for b in graph.bindings:
        mask = ~np.isin(every[b.slots], np.fromiter(removed_roots, dtype=np.int64))
        key = (b.module, b.kind)
        if key in keep_masks and not np.array_equal(keep_masks[key], mask):
            raise SurgeryError(
                f"{b.module} is used twice with different channels; add it to exclude"
            )
        keep_masks[key] = mask
    return ChannelPlan(graph, removed, keep_masks, report)


def group_ratio(ratio: float, per_layer: Mapping[str, float], producers: frozenset[str]) -> float:
    """The ratio of a channel group: the largest per-layer override among its producers
    (:func:`squeezer.core.select.override`), else ``ratio``."""
    return max(float(override(per_layer, p, ratio)) for p in producers)


def apply_plan(model: nn.Module, plan: ChannelPlan) -> nn.Module:
    """A pruned deep copy of ``model`` (``model`` itself is unchanged)."""
    pruned = copy.deepcopy(model)
    modules = {k[0] for k in plan.keep if k[1] != "param"}
    records = []
    for name in sorted(modules):
        old = pruned.get_submodule(name)
        masks = {kind: plan.keep.get((name, kind)) for kind in ("in", "out", "bn", "dw", "gin")}
        if all(m is None or m.all() for m in masks.values()):
            continue
        features = masks["dw"] if masks["dw"] is not None else masks["bn"]
        keep_in = masks["gin"] if masks["gin"] is not None else masks["in"]
        new = resized(old, keep_in, masks["out"], features)
        new.train(old.training)
        set_module(pruned, name, new)
        records.append(replacement(name, new))
    dims = {b.module: b.dim for b in plan.graph.bindings if b.kind == "param"}
    for (name, kind), mask in sorted(plan.keep.items()):
        if kind == "param" and not mask.all():
            records.append(resize_parameter_(pruned, name, dims[name], mask))
    record(pruned, records)
    return pruned


def resize_parameter_(
    model: nn.Module, name: str, dim: int, keep: np.ndarray | Tensor
) -> dict[str, Any]:
    """Keep only ``keep`` along ``dim`` of parameter (or buffer) ``name``; the record of it.

    A LayerNorm whose weight this is gets its ``normalized_shape`` to match.
    """
    owner_name, _, attr = name.rpartition(".")
    owner = model.get_submodule(owner_name)
    t = getattr(owner, attr)
    index = torch.as_tensor(
        np.flatnonzero(np.asarray(keep)) if not isinstance(keep, Tensor) else keep
    )
    value = t.detach().index_select(dim, index.long()).clone()
    if isinstance(t, nn.Parameter):
        setattr(owner, attr, nn.Parameter(value, requires_grad=t.requires_grad))
    else:
        owner._buffers[attr] = value
    if isinstance(owner, nn.LayerNorm) and attr in ("weight", "bias"):
        owner.normalized_shape = (value.shape[0],)
    if isinstance(owner, nn.Embedding) and attr == "weight":
        owner.embedding_dim = value.shape[1]
    return {"module": name, "type": "Param", "shape": list(value.shape)}


def zero_channels_(model: nn.Module, plan: ChannelPlan) -> nn.Module:
    """Zero, in place, what :func:`apply_plan` would remove: the removed filters and biases
    and the BatchNorm scale and shift of the removed channels, so that those channels carry
    exact zeros, and the removed entries of learned tensors the forward reads directly (a
    position embedding). Pruned and zeroed models then compute the same function wherever
    the graph is exact (not through a LayerNorm over the channels; used in tests)."""
    removed = plan.removed_slots()
    with torch.no_grad():
        for b in plan.graph.bindings:
            roots = plan.graph.root_array()[b.slots].tolist()
            idx = [i for i, r in enumerate(roots) if r in removed]
            if not idx:
                continue
            if b.kind == "param":  # a learned tensor added in (a position embedding)
                owner, _, attr = b.module.rpartition(".")
                t = getattr(model.get_submodule(owner), attr)
                if isinstance(t, Tensor):
                    t.index_fill_(b.dim, torch.tensor(idx), 0)
                continue
            if b.kind not in ("out", "dw", "bn"):
                continue
            m = model.get_submodule(b.module)
            if b.kind in ("out", "dw"):
                m.weight[idx] = 0
                if m.bias is not None:
                    m.bias[idx] = 0
            elif b.kind == "bn" and getattr(m, "weight", None) is not None:
                m.weight[idx] = 0
                m.bias[idx] = 0
    return model
