"""Physically removing channel groups: a plain, smaller ``nn.Module``.

:func:`plan_channels` scores every removable channel class of a :class:`ChannelGraph` and picks
the weakest per layer group; :func:`apply_plan` rebuilds the touched ``Conv2d``,
``BatchNorm`` and ``Linear`` modules with fewer channels and copies the kept weights. The
edits are recorded on the model (``squeezer_arch["surgery"]``) so a saved file rebuilds the
smaller architecture without anyone replaying the pruning.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from squeezer.layers import SpecError, build_module
from squeezer.surgery.activation_criteria import DATA_CRITERIA, activation_scores
from squeezer.surgery.graph import Binding, ChannelGraph, SurgeryError
from squeezer.surgery.walk import matches, set_module

# A criterion scores each channel of a class from the tensors bound to it (higher = keep).
Criterion = Callable[[nn.Module, "ChannelClass"], float]


@dataclass
class ChannelClass:
    """One set of coupled channels: removing it edits every ``(binding, index)`` listed."""

    root: int
    members: list[tuple[Binding, int]] = field(default_factory=list)

    @property
    def producers(self) -> frozenset[str]:
        return frozenset(b.module for b, _ in self.members if b.kind in ("out", "dw"))


def filter_norm(model: nn.Module, c: ChannelClass, p: int = 1) -> float:
    """Mean Lp norm per weight of the filters producing the channel (Li et al. 2017)."""
    norms = []
    for b, i in c.members:
        if b.kind in ("out", "dw"):
            w = model.get_submodule(b.module).weight.detach()[i]
            norms.append(float(w.abs().pow(p).mean().pow(1 / p)))
    return float(np.mean(norms)) if norms else 0.0


def bn_scale(model: nn.Module, c: ChannelClass) -> float:
    """Mean |gamma| of the BatchNorm layers on the channel (network slimming, Liu et al. 2017)."""
    scales = [
        abs(float(model.get_submodule(b.module).weight.detach()[i]))
        for b, i in c.members
        if b.kind == "bn" and model.get_submodule(b.module).weight is not None
    ]
    return float(np.mean(scales)) if scales else filter_norm(model, c)


CRITERIA: dict[str, Criterion] = {
    "l1": lambda m, c: filter_norm(m, c, 1),
    "l2": lambda m, c: filter_norm(m, c, 2),
    "bn_scale": bn_scale,
}


@dataclass
class ChannelPlan:
    """Which channel classes to remove, and per binding which indices to keep."""

    graph: ChannelGraph
    removed: list[ChannelClass]
    keep: dict[tuple[str, str], np.ndarray]  # (module, kind) -> boolean mask
    groups: list[dict[str, Any]]

    def removed_slots(self) -> set[int]:
        return {self.graph.uf.find(int(b.slots[i])) for c in self.removed for b, i in c.members}


def channel_classes(graph: ChannelGraph) -> list[ChannelClass]:
    """The removable channel classes of ``graph`` (not locked, with a producer)."""
    locked = graph.locked_roots()
    by_root: dict[int, ChannelClass] = {}
    for b in graph.bindings:
        for i, s in enumerate(b.slots.tolist()):
            root = graph.uf.find(s)
            if root in locked:
                continue
            by_root.setdefault(root, ChannelClass(root)).members.append((b, i))
    return [c for c in by_root.values() if c.producers]


def plan_channels(
    model: nn.Module,
    example_inputs: Tensor | tuple[Tensor, ...],
    ratio: float | Mapping[str, float] = 0.5,
    criterion: str | Criterion = "l1",
    *,
    ignored_layers: Sequence[str] = (),
    round_to: int = 1,
    scores: Mapping[int, float] | None = None,
    data: Iterable[tuple[Tensor, Tensor]] | None = None,
    scope: str = "layer",
    threshold: float | None = None,
    graph: ChannelGraph | None = None,
) -> ChannelPlan:
    """Choose the channel classes to remove.

    Args:
        model: the network.
        example_inputs: inputs for tracing.
        ratio: fraction of each layer group's channels to remove, or a map from a layer name
            (or shell pattern) to its ratio; groups whose producers match no key keep all.
        criterion: a name of :data:`CRITERIA` or a function scoring a :class:`ChannelClass`.
        ignored_layers: names or patterns of layers whose output channels are kept.
        round_to: keep a multiple of this many channels in each group.
        scores: precomputed scores by class root.
        data: batches of ``(inputs, targets)`` for the data-driven criteria ``"taylor"``,
            ``"energy"`` and ``"apoz"``.
        scope: ``"layer"`` removes ``ratio`` of every group; ``"global"`` ranks all channels
            of the model together and removes the lowest ``ratio`` overall (as network
            slimming does with BatchNorm scales), keeping at least ``round_to`` per group.
        threshold: instead of a ratio, remove every channel scoring below this (e.g. the
            filters a group-lasso penalty drove to zero), keeping at least one per group.
        graph: a :class:`ChannelGraph` of ``model`` already built (saves tracing twice).
    """
    if scope not in ("layer", "global"):
        raise ValueError("scope must be 'layer' or 'global'")
    graph = graph if graph is not None else ChannelGraph(model, example_inputs)
    groups: dict[frozenset[str], list[ChannelClass]] = defaultdict(list)
    for c in channel_classes(graph):
        if any(matches(p, ignored_layers) for p in c.producers):
            continue
        groups[c.producers].append(c)
    every = [c for cs in groups.values() for c in cs]
    if scores is None and isinstance(criterion, str) and criterion in DATA_CRITERIA:
        if data is None:
            raise ValueError(f"criterion {criterion!r} needs data=batches")
        scores = activation_scores(model, every, data, criterion)
    elif scores is None:
        if isinstance(criterion, str) and criterion not in CRITERIA:
            known = ", ".join([*CRITERIA, *DATA_CRITERIA])
            raise ValueError(f"unknown criterion {criterion!r} (known: {known})")
        score = CRITERIA[criterion] if isinstance(criterion, str) else criterion
        scores = {c.root: score(model, c) for c in every}
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
        budget = math.floor(float(ratio if not isinstance(ratio, Mapping) else 0) * len(every))
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
            r = ratio_for(ratio, producers)
            n = len(classes)
            keep = max(1, n - math.floor(r * n + 1e-9))
            if round_to > 1:
                keep = min(n, max(round_to, math.ceil(keep / round_to) * round_to))
            if keep >= n:
                continue
            order = np.argsort(np.asarray([scores[c.root] for c in classes]), kind="stable")
            removed += [classes[i] for i in order[: n - keep]]
            report.append({"layers": sorted(producers), "channels": n, "kept": keep})
    removed_roots = {c.root for c in removed}
    keep_masks: dict[tuple[str, str], np.ndarray] = {}
    for b in graph.bindings:
        mask = np.array([graph.uf.find(int(s)) not in removed_roots for s in b.slots])
        key = (b.module, b.kind)
        if key in keep_masks and not np.array_equal(keep_masks[key], mask):
            raise SurgeryError(
                f"{b.module} is used twice with different channels; add it to ignored_layers"
            )
        keep_masks[key] = mask
    return ChannelPlan(graph, removed, keep_masks, report)


def ratio_for(ratio: float | Mapping[str, float], producers: frozenset[str]) -> float:
    """The ratio for a channel group: a float, or the largest ratio whose layer-name pattern
    matches one of the group's producers (0 when none does)."""
    if isinstance(ratio, Mapping):
        found = [r for p in producers for k, r in ratio.items() if p == k or matches(p, [k])]
        return max(found) if found else 0.0
    return float(ratio)


def _idx(mask: np.ndarray) -> Tensor:
    return torch.from_numpy(np.flatnonzero(mask)).long()


def _new_conv(
    old: nn.Conv2d,
    keep_in: np.ndarray | None,
    keep_out: np.ndarray | None,
    depthwise: np.ndarray | None,
) -> nn.Conv2d:
    w = old.weight.detach()
    bias = old.bias.detach() if old.bias is not None else None
    if depthwise is not None:
        idx = _idx(depthwise)
        c = len(idx)
        new = nn.Conv2d(
            c,
            c,
            old.kernel_size,
            old.stride,
            old.padding,
            old.dilation,
            groups=c,
            bias=bias is not None,
            padding_mode=old.padding_mode,
        )
        new.weight.data = w[idx].clone()
        if bias is not None:
            new.bias.data = bias[idx].clone()
        return new
    oi = _idx(keep_out) if keep_out is not None else torch.arange(old.out_channels)
    ii = _idx(keep_in) if keep_in is not None else torch.arange(old.in_channels)
    new = nn.Conv2d(
        len(ii),
        len(oi),
        old.kernel_size,
        old.stride,
        old.padding,
        old.dilation,
        bias=bias is not None,
        padding_mode=old.padding_mode,
    )
    new.weight.data = w[oi][:, ii].clone()
    if bias is not None:
        new.bias.data = bias[oi].clone()
    return new


def _new_linear(
    old: nn.Linear, keep_in: np.ndarray | None, keep_out: np.ndarray | None
) -> nn.Linear:
    oi = _idx(keep_out) if keep_out is not None else torch.arange(old.out_features)
    ii = _idx(keep_in) if keep_in is not None else torch.arange(old.in_features)
    new = nn.Linear(len(ii), len(oi), bias=old.bias is not None)
    new.weight.data = old.weight.detach()[oi][:, ii].clone()
    if old.bias is not None:
        new.bias.data = old.bias.detach()[oi].clone()
    return new


def _new_bn(old: nn.modules.batchnorm._BatchNorm, keep: np.ndarray) -> nn.Module:
    idx = _idx(keep)
    new = type(old)(len(idx), old.eps, old.momentum, old.affine, old.track_running_stats)
    if old.affine:
        new.weight.data = old.weight.detach()[idx].clone()
        new.bias.data = old.bias.detach()[idx].clone()
    if old.track_running_stats:
        new.running_mean.data = old.running_mean[idx].clone()
        new.running_var.data = old.running_var[idx].clone()
        new.num_batches_tracked.data = old.num_batches_tracked.clone()
    return new


def module_record(name: str, m: nn.Module) -> dict[str, Any]:
    """Plain data that rebuilds module ``m`` (the shapes only; weights come separately)."""
    if isinstance(m, nn.Conv2d):
        return {
            "module": name,
            "type": "Conv2d",
            "in": m.in_channels,
            "out": m.out_channels,
            "groups": m.groups,
        }
    if isinstance(m, nn.Linear):
        return {"module": name, "type": "Linear", "in": m.in_features, "out": m.out_features}
    if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return {"module": name, "type": type(m).__name__, "features": m.num_features}
    raise SurgeryError(f"cannot record module {name} of type {type(m).__name__}")


def apply_plan(model: nn.Module, plan: ChannelPlan) -> nn.Module:
    """A pruned deep copy of ``model`` (``model`` itself is unchanged)."""
    pruned = copy.deepcopy(model)
    modules = {k[0] for k in plan.keep}
    records = []
    for name in sorted(modules):
        old = pruned.get_submodule(name)
        masks = {kind: plan.keep.get((name, kind)) for kind in ("in", "out", "bn", "dw")}
        if all(m is None or m.all() for m in masks.values()):
            continue
        if isinstance(old, nn.Conv2d):
            new: nn.Module = _new_conv(old, masks["in"], masks["out"], masks["dw"])
        elif isinstance(old, nn.Linear):
            new = _new_linear(old, masks["in"], masks["out"])
        else:
            new = _new_bn(old, masks["bn"])
        new.train(old.training)
        set_module(pruned, name, new)
        records.append(module_record(name, new))
    arch = getattr(pruned, "squeezer_arch", None)
    if isinstance(arch, dict):
        earlier = {r["module"]: r for r in arch.get("surgery", [])}
        earlier.update({r["module"]: r for r in records})
        pruned.squeezer_arch = {**arch, "surgery": list(earlier.values())}
    return pruned


def apply_records(model: nn.Module, records: Sequence[Mapping[str, Any]]) -> nn.Module:
    """Rebuild recorded modules with their recorded shapes (weights to be loaded after).

    Raises:
        SurgeryError: a record names a module the model lacks or has an invalid shape.
    """
    for r in records:
        name = r.get("module")
        try:
            old = model.get_submodule(str(name))
        except AttributeError:
            raise SurgeryError(f"recorded surgery names unknown module {name!r}") from None
        kind = r.get("type")
        if kind == "Identity":
            set_module(model, str(name), nn.Identity())
            continue
        if kind == "Replace":
            try:
                set_module(model, str(name), build_module(r.get("spec")))
            except SpecError as err:
                raise SurgeryError(f"recorded surgery for {name}: {err}") from None
            continue
        ints = [v for k, v in r.items() if k in ("in", "out", "groups", "features")]
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in ints):
            raise SurgeryError(f"recorded surgery for {name}: invalid sizes")
        if kind == "Conv2d" and isinstance(old, nn.Conv2d):
            new: nn.Module = nn.Conv2d(
                r["in"],
                r["out"],
                old.kernel_size,
                old.stride,
                old.padding,
                old.dilation,
                groups=r["groups"],
                bias=old.bias is not None,
                padding_mode=old.padding_mode,
            )
        elif kind == "Linear" and isinstance(old, nn.Linear):
            new = nn.Linear(r["in"], r["out"], bias=old.bias is not None)
        elif kind in ("BatchNorm1d", "BatchNorm2d") and type(old).__name__ == kind:
            new = type(old)(
                r["features"], old.eps, old.momentum, old.affine, old.track_running_stats
            )
        else:
            raise SurgeryError(
                f"recorded surgery for {name}: {kind} does not match {type(old).__name__}"
            )
        set_module(model, str(name), new)
    return model


def zero_channels_(model: nn.Module, plan: ChannelPlan) -> nn.Module:
    """Zero, in place, what :func:`apply_plan` would remove: the removed filters and biases
    and the BatchNorm scale and shift of the removed channels, so that those channels carry
    exact zeros. Pruned and zeroed models then compute the same function (used in tests)."""
    removed = plan.removed_slots()
    with torch.no_grad():
        for b in plan.graph.bindings:
            idx = [i for i, s in enumerate(b.slots.tolist()) if plan.graph.uf.find(s) in removed]
            if not idx:
                continue
            m = model.get_submodule(b.module)
            if b.kind in ("out", "dw"):
                m.weight[idx] = 0
                if m.bias is not None:
                    m.bias[idx] = 0
            elif b.kind == "bn" and m.affine:
                m.weight[idx] = 0
                m.bias[idx] = 0
    return model


def prune_channels(
    model: nn.Module,
    example_inputs: Tensor | tuple[Tensor, ...],
    ratio: float | Mapping[str, float] = 0.5,
    criterion: str | Criterion = "l1",
    *,
    ignored_layers: Sequence[str] = (),
    round_to: int = 1,
    data: Iterable[tuple[Tensor, Tensor]] | None = None,
    scope: str = "layer",
    threshold: float | None = None,
) -> nn.Module:
    """Remove channels from ``model``; returns a plain, smaller copy that runs.

    Args:
        model: the network (left unchanged).
        example_inputs: inputs used to trace and check the model.
        ratio: fraction of each coupled layer group's channels to remove (or a map from layer
            name or pattern to ratio).
        criterion: ``"l1"`` (Li et al. 2017), ``"l2"``, ``"bn_scale"`` (Liu et al. 2017),
            ``"taylor"`` (Molchanov et al. 2017), ``"energy"``, ``"apoz"`` (Hu et al. 2016; the
            last three need ``data``), or a function of ``(model, ChannelClass)``.
        ignored_layers: names or patterns of layers whose output channels are kept.
        round_to: keep a multiple of this many channels per group.
        data: batches of ``(inputs, targets)`` for the data-driven criteria.
        scope: ``"layer"`` or ``"global"`` ranking (see :func:`plan_channels`).
        threshold: remove every channel scoring below this instead of a ratio.

    Raises:
        SurgeryError: the model cannot be traced or the pruned model would not run.
    """
    plan = plan_channels(
        model,
        example_inputs,
        ratio,
        criterion,
        ignored_layers=ignored_layers,
        round_to=round_to,
        data=data,
        scope=scope,
        threshold=threshold,
    )
    pruned = apply_plan(model, plan)
    inputs = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
    was, was_model = pruned.training, model.training
    pruned.eval()
    model.eval()
    try:
        with torch.no_grad():
            out, ref = pruned(*inputs), model(*inputs)
    except RuntimeError as exc:
        raise SurgeryError(
            f"the pruned model does not run ({str(exc).splitlines()[0]}); the original is unchanged"
        ) from None
    finally:
        pruned.train(was)
        model.train(was_model)
    if out.shape != ref.shape:
        raise SurgeryError("the pruned model changed the output shape; the original is unchanged")
    for w in plan.graph.warnings:
        warnings.warn(w, stacklevel=2)
    return pruned
