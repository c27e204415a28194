"""Channel pruning as a method: the :class:`ChannelPruning` config and its handler.

    sq.prune_(model, sq.pruning.ChannelPruning(ratio=0.5, criterion="l1"), example_inputs)

The handler traces the coupled channel groups (:mod:`squeezer.surgery.graph`), lets the
criterion score them (:mod:`squeezer.pruning.criteria`), removes the weakest channels of each
selected group (:mod:`squeezer.surgery.channels`), lets the criterion compensate, checks that
the smaller model runs with the same output shape, and only then puts the smaller layers into
the model. On any failure the model is left as it was.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from squeezer.analysis.counting import as_tuple, count_flops, count_params
from squeezer.config import check
from squeezer.core import LayerSelection, Report, register_handler
from squeezer.errors import ConfigError, ModelError, SurgeryError, UnknownNameError
from squeezer.pruning.criteria import Criterion, criterion_class, make_criterion
from squeezer.surgery import ChannelGraph, ChannelPlan, apply_plan, coupled_groups, group_ratio
from squeezer.surgery import plan_channels as plan_from_scores


@dataclass(frozen=True)
class ChannelPruning(LayerSelection):
    """Remove whole channels (filters and everything coupled to them).

    Attributes:
        ratio: fraction of each coupled group's channels to remove, in [0, 1); a group of n
            keeps floor((1 - ratio) * n) channels (at least one), as Torch-Pruning rounds.
        criterion: a name from :func:`squeezer.pruning.criteria.list_criteria`.
        per_layer: layer name or pattern -> ratio for the groups it produces.
        scope: ``"layer"`` (every group loses ``ratio``) or ``"global"`` (one ranking over
            the whole model, as network slimming does).
        threshold: remove every channel scoring below this instead (ratio then unused).
        round_to: keep a multiple of this many channels per group.
        samples: sampled outputs per consumer for the reconstruction criteria.
        seed: seed of that sampling.
        tracer: ``"export"`` (``torch.export``), ``"fx"`` or ``"auto"`` (export, then fx
            where export fails); see :class:`squeezer.surgery.ChannelGraph`.
        layers, exclude, layer_types: which producing layers may lose channels; a group is
            pruned only when every layer producing it is selected.
    """

    ratio: float = 0.5
    criterion: str = "l1"
    per_layer: dict[str, float] = field(default_factory=dict)
    scope: str = "layer"
    threshold: float | None = None
    round_to: int = 1
    samples: int = 4000
    seed: int = 0
    tracer: str = "auto"

    default_types: ClassVar[tuple[str, ...]] = ("Conv1d", "Conv2d", "Linear")

    def validate(self) -> None:
        super().validate()
        for name, r in [("ratio", self.ratio), *self.per_layer.items()]:
            check(
                isinstance(r, int | float) and 0 <= r < 1,
                f"ChannelPruning: ratio of {name} must be in [0, 1)",
            )
        try:
            criterion_class(self.criterion)
        except UnknownNameError as err:
            raise ConfigError(f"ChannelPruning: {err}") from None
        check(self.scope in ("layer", "global"), "ChannelPruning: scope must be layer or global")
        check(
            isinstance(self.round_to, int) and self.round_to >= 1,
            "ChannelPruning: round_to must be >= 1",
        )
        check(self.samples >= 1, "ChannelPruning: samples must be >= 1")
        check(
            self.tracer in ("auto", "export", "fx"),
            "ChannelPruning: tracer must be auto, export or fx",
        )

    def make_criterion(self) -> Criterion:
        """A fresh criterion object, given the options of this config it takes."""
        cls = criterion_class(self.criterion)
        return make_criterion(self.criterion, **{k: getattr(self, k) for k in cls.options})


@dataclass
class ChannelReport(Report):
    """What channel pruning removed: per coupled group, and the whole model's cost."""

    criterion: str
    groups: list[dict[str, Any]]
    params_before: int
    params_after: int
    flops_before: int
    flops_after: int
    warnings: list[str] = field(default_factory=list)
    inexact: list[str] = field(default_factory=list)
    tracer: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": "channel_pruning",
            "criterion": self.criterion,
            "params_before": self.params_before,
            "params_after": self.params_after,
            "flops_before": self.flops_before,
            "flops_after": self.flops_after,
            "flops_reduction": self.flops_before / max(self.flops_after, 1),
            "groups": self.groups,
            "warnings": self.warnings,
            "inexact": self.inexact,
            "tracer": self.tracer,
        }

    def format(self) -> str:
        lines = [f"channel pruning ({self.criterion})", f"{'layers':<48} {'channels':>14}"]
        for g in self.groups:
            names = ", ".join(g["layers"])
            names = names if len(names) <= 48 else names[:45] + "..."
            lines.append(f"{names:<48} {g['channels']:>6} -> {g['kept']:<6}")
        lines.append(
            f"params {self.params_before:,} -> {self.params_after:,} "
            f"({self.params_before / max(self.params_after, 1):.2f}x fewer), FLOPs "
            f"{self.flops_before:,} -> {self.flops_after:,} "
            f"({self.flops_before / max(self.flops_after, 1):.2f}x fewer)"
        )
        if self.inexact:
            lines.append(
                f"not exact: {len(self.inexact)} LayerNorm(s) normalize over pruned channels, so "
                "the kept outputs change too (fine-tune after)"
            )
        return "\n".join(lines)


def default_inputs(model: nn.Module, what: str) -> tuple[Tensor, ...]:
    """One zero example shaped by the model's ``input_shape`` attribute.

    Raises:
        ModelError: the model has no ``input_shape``; ``what`` needs example inputs.
    """
    shape = getattr(model, "input_shape", None)
    if not shape:
        raise ModelError(
            f"{what} needs example_inputs for a model without an input_shape attribute"
        )
    p = next(iter(model.parameters()), None)
    kw = {"dtype": p.dtype, "device": p.device} if p is not None else {}
    return (torch.zeros(1, *shape, **kw),)


def adopt_(model: nn.Module, new: nn.Module) -> nn.Module:
    """Make ``model`` (in place) structurally and numerically ``new``, a changed deep copy
    of it: its children, direct parameters and buffers, and architecture record."""
    for name, child in new.named_children():
        setattr(model, name, child)
    for name, p in new.named_parameters(recurse=False):
        model._parameters[name] = p
    for name, b in new.named_buffers(recurse=False):
        model._buffers[name] = b
    arch = getattr(new, "squeezer_arch", None)
    if arch is not None:
        model.squeezer_arch = arch
    return model


def _run_check(pruned: nn.Module, model: nn.Module, inputs: tuple[Tensor, ...]) -> None:
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
    shape = getattr(out, "shape", None)
    if shape is not None and shape != getattr(ref, "shape", None):
        raise SurgeryError("the pruned model changed the output shape; the original is unchanged")


def channel_plan(
    model: nn.Module,
    config: ChannelPruning,
    inputs: tuple[Tensor, ...],
    data: Iterable[tuple[Tensor, Tensor]] | None = None,
    graph: ChannelGraph | None = None,
) -> tuple[ChannelPlan, Criterion]:
    """The criterion's plan for ``config`` (nothing changed yet)."""
    graph = graph if graph is not None else ChannelGraph(model, inputs, tracer=config.tracer)
    criterion = config.make_criterion()
    modules = dict(model.named_modules())

    def selected(name: str) -> bool:
        return config.selects(name, modules[name])

    groups = {
        k: v for k, v in coupled_groups(graph, selected).items() if criterion.eligible(model, v)
    }
    eligible_producers = {p for k in groups for p in k}
    ratios = {k: group_ratio(config.ratio, config.per_layer, k) for k in groups}
    criterion.budget(ratios)
    batches = list(data) if data is not None else None
    if criterion.needs_data and batches is None:
        raise ModelError(f"criterion {config.criterion!r} needs data=batches of (inputs, targets)")
    scores = criterion.score(model, graph, groups, batches)
    plan = plan_from_scores(
        model,
        inputs,
        config.ratio,
        scores,
        per_layer=config.per_layer,
        selected=lambda n: n in eligible_producers,
        round_to=config.round_to,
        scope=config.scope,
        threshold=config.threshold,
        graph=graph,
    )
    return plan, criterion


def pruned_copy(
    model: nn.Module,
    config: ChannelPruning,
    example_inputs: Tensor | tuple[Tensor, ...] | None = None,
    data: Iterable[tuple[Tensor, Tensor]] | None = None,
) -> tuple[nn.Module, ChannelReport]:
    """A smaller copy of ``model`` with ``config``'s channels removed, and the report."""
    inputs = (
        as_tuple(example_inputs)
        if example_inputs is not None
        else default_inputs(model, "channel pruning")
    )
    plan, criterion = channel_plan(model, config, inputs, data)
    pruned = apply_plan(model, plan)
    criterion.compensate(model, pruned, plan)
    _run_check(pruned, model, inputs)
    report = ChannelReport(
        criterion=config.criterion,
        groups=plan.groups,
        params_before=count_params(model),
        params_after=count_params(pruned),
        flops_before=count_flops(model, inputs)[0],
        flops_after=count_flops(pruned, inputs)[0],
        warnings=plan.graph.summary(),
        inexact=list(plan.graph.inexact),
        tracer=plan.graph.tracer,
    )
    for w in report.warnings:
        warnings.warn(w, stacklevel=3)
    return pruned, report


@register_handler("prune", ChannelPruning)
def _prune_channels_(
    model: nn.Module,
    config: ChannelPruning,
    example_inputs: Tensor | tuple[Tensor, ...] | None = None,
    *,
    data: Iterable[tuple[Tensor, Tensor]] | None = None,
) -> ChannelReport:
    pruned, report = pruned_copy(model, config, example_inputs, data)
    adopt_(model, pruned)
    return report


def _config(
    ratio: float | Mapping[str, float],
    criterion: str,
    ignored_layers: Sequence[str],
    **fields: Any,
) -> ChannelPruning:
    per_layer: dict[str, float] = {}
    if isinstance(ratio, Mapping):
        per_layer, ratio = dict(ratio), 0.0
    return ChannelPruning(
        ratio=float(ratio),
        criterion=criterion,
        per_layer=per_layer,
        exclude=tuple(ignored_layers),
        **{k: v for k, v in fields.items() if v is not None},
    )


def prune_channels(
    model: nn.Module,
    example_inputs: Tensor | tuple[Tensor, ...],
    ratio: float | Mapping[str, float] = 0.5,
    criterion: str = "l1",
    *,
    ignored_layers: Sequence[str] = (),
    round_to: int = 1,
    data: Iterable[tuple[Tensor, Tensor]] | None = None,
    scope: str = "layer",
    threshold: float | None = None,
) -> nn.Module:
    """Remove channels; returns a plain, smaller copy (``model`` is unchanged).

    The call form of ``sq.prune_(copy, ChannelPruning(...), example_inputs, data=...)`` that
    returns the copy; see :class:`ChannelPruning` for the arguments (``ignored_layers`` is its
    ``exclude``; a mapping ``ratio`` is its ``per_layer``).

    Raises:
        SurgeryError: the model cannot be traced or the pruned model would not run.
    """
    config = _config(
        ratio, criterion, ignored_layers, round_to=round_to, scope=scope, threshold=threshold
    )
    return pruned_copy(model, config, example_inputs, data)[0]


def plan_channels(
    model: nn.Module,
    example_inputs: Tensor | tuple[Tensor, ...],
    ratio: float | Mapping[str, float] = 0.5,
    criterion: str = "l1",
    *,
    ignored_layers: Sequence[str] = (),
    round_to: int = 1,
    data: Iterable[tuple[Tensor, Tensor]] | None = None,
    scope: str = "layer",
    threshold: float | None = None,
) -> ChannelPlan:
    """The plan :func:`prune_channels` would carry out (nothing is changed)."""
    config = _config(
        ratio, criterion, ignored_layers, round_to=round_to, scope=scope, threshold=threshold
    )
    return channel_plan(model, config, as_tuple(example_inputs), data)[0]


def prune_with_reconstruction(
    model: nn.Module,
    example_inputs: Tensor | tuple[Tensor, ...],
    data: Sequence[tuple[Tensor, Tensor]],
    ratio: float | Mapping[str, float] = 0.5,
    method: str = "thinet",
    *,
    samples: int = 4000,
    ignored_layers: Sequence[str] = (),
    round_to: int = 1,
    seed: int = 0,
) -> nn.Module:
    """ThiNet or LASSO channel pruning with least-squares refitting; returns a smaller copy."""
    config = _config(ratio, method, ignored_layers, round_to=round_to, samples=samples, seed=seed)
    return pruned_copy(model, config, example_inputs, data)[0]


def merge_neurons(
    model: nn.Module,
    example_inputs: Tensor | tuple[Tensor, ...],
    ratio: float | Mapping[str, float] = 0.5,
    *,
    ignored_layers: Sequence[str] = (),
) -> nn.Module:
    """Merge away ``ratio`` of the neurons of every fc layer that feeds one fc layer
    (Srinivas & Babu 2015); returns a smaller copy, other layers unchanged."""
    config = _config(ratio, "merge", ignored_layers)
    return pruned_copy(model, config, example_inputs)[0]
