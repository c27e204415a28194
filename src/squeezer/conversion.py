"""``convert_``: replace layers by other layers that compute the same function (or fit it), one
config and one handler per kind of conversion, as the other verbs.

    report = sq.convert_(model, sq.dynamic.Winograd())      # every eligible 3x3 conv
    print(report)                                           # per layer: done, or why not

Handlers use :func:`convert_layers_`, the common walker: it visits the layers the config
selects, asks the handler's ``make(name, module)`` for a replacement (or a reason it cannot
make one), puts it in place and records it (so ``.sqz`` files and checkpoints rebuild it), and
reports parameters and FLOPs per layer and the largest change of the model's output. A layer
the user named (``layers=("conv2",)``) that cannot be converted is an error, not a skip.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from squeezer.analysis.counting import count_flops
from squeezer.core import LayerSelection, Report, apply, replace
from squeezer.errors import ModelError


@dataclass
class ConvertedLayer:
    """What happened to one selected layer."""

    name: str
    before: str
    after: str = ""
    reason: str = ""
    params_before: int = 0
    params_after: int = 0
    flops_before: int = 0
    flops_after: int = 0
    fit_error: float | None = None

    @property
    def converted(self) -> bool:
        return bool(self.after)


@dataclass
class ConversionReport(Report):
    """Per-layer results of :func:`convert_`, and the model's largest output change on the
    example inputs (``max_abs_diff``; None without example inputs). Conversions that fit the
    new layers give each layer's relative output error (``fit_error``) and what they were
    fitted to (``fitted_to``)."""

    method: str
    layers: list[ConvertedLayer]
    max_abs_diff: float | None = None
    fitted_to: str = ""

    @property
    def converted(self) -> list[ConvertedLayer]:
        return [r for r in self.layers if r.converted]

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "converted": len(self.converted),
            "max_abs_diff": self.max_abs_diff,
            **({"fitted_to": self.fitted_to} if self.fitted_to else {}),
            "layers": [{**asdict(r), "converted": r.converted} for r in self.layers],
        }

    def format(self) -> str:
        head = f"{'layer':<24} {'now':<18} {'params':>19} {'FLOPs':>25}  note"
        title = f"conversion: {self.method}"
        lines = [title + (f", fitted to {self.fitted_to}" if self.fitted_to else ""), head]
        lines.append("-" * len(head))
        for r in self.layers:
            if not r.converted:
                lines.append(f"{r.name:<24} {r.before:<18} {'':>19} {'':>25}  {r.reason}")
                continue
            params = f"{r.params_before:,} -> {r.params_after:,}"
            flops = f"{r.flops_before:,} -> {r.flops_after:,}"
            note = "" if r.fit_error is None else f"  output error {r.fit_error:.3f}"
            lines.append(f"{r.name:<24} {r.after:<18} {params:>19} {flops:>25}{note}")
        lines.append(f"{len(self.converted)} of {len(self.layers)} layers converted")
        if self.max_abs_diff is not None:
            lines.append(f"largest change of the model's output: {self.max_abs_diff:.3g}")
        return "\n".join(lines)


def convert_(
    model: nn.Module,
    config: object,
    example_inputs: Tensor | tuple[Tensor, ...] | None = None,
    *,
    data: Any = None,
) -> Report:
    """Replace ``model``'s layers in place as ``config`` says.

    Args:
        model: the network.
        config: a conversion, e.g. :class:`squeezer.dynamic.Winograd` or
            :class:`squeezer.dynamic.FFTConv`.
        example_inputs: inputs for counting FLOPs and checking the outputs (default: one
            random example of the model's ``input_shape``, when it has one).
        data: batches, for the conversions that fit the new layers to data.

    Returns:
        The conversion's report (``format()``, ``to_dict()``).

    Raises:
        ConfigError: ``config`` is not a conversion.
        ModelError: a layer named in ``config.layers`` cannot be converted, or none can.
    """
    return apply("convert", model, config, example_inputs, data=data)


def _inputs(model: nn.Module, example_inputs: Any) -> tuple[Tensor, ...] | None:
    if example_inputs is None:
        shape = getattr(model, "input_shape", None)
        if not shape:
            return None
        g = torch.Generator().manual_seed(0)
        p = next(model.parameters(), None)
        x = torch.randn(1, *shape, generator=g)
        return (x.to(p.device) if p is not None else x,)
    return example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)


def convert_layers_(
    model: nn.Module,
    config: LayerSelection,
    make: Callable[[str, nn.Module], nn.Module | str],
    example_inputs: Any,
    method: str,
    selected: list[tuple[str, nn.Module]] | None = None,
) -> ConversionReport:
    """The common walker of the conversions (see the module).

    Args:
        model: the network, changed in place.
        config: which layers (its ``layers``, ``exclude`` and ``layer_types``).
        make: given a selected layer's name and module, its replacement, or a string saying
            why it cannot have one.
        example_inputs: for FLOPs and the output check (None: the model's ``input_shape``).
        method: the conversion's name, for the report.
        selected: the layers to visit, when the handler chose them itself (default: those
            ``config`` selects).
    """
    inputs = _inputs(model, example_inputs)
    was_training = model.training
    model.eval()
    try:
        before_out = _run(model, inputs)
        flops_before = count_flops(model, inputs)[1] if inputs is not None else {}
        rows, made = [], []
        for name, module in selected if selected is not None else list(config.select(model)):
            result = make(name, module)
            row = ConvertedLayer(name, type(module).__name__)
            if isinstance(result, str):
                if name in config.layers:
                    raise ModelError(f"{method}: {name} cannot be converted: {result}")
                row.reason = result
            else:
                row.after = type(result).__name__
                row.params_before = sum(p.numel() for p in module.parameters())
                row.params_after = sum(p.numel() for p in result.parameters())
                made.append((name, result))
            rows.append(row)
        if not made:
            why = "; ".join(f"{r.name}: {r.reason}" for r in rows) or "no layer selected"
            raise ModelError(f"{method}: no layer could be converted ({why})")
        for name, layer in made:
            replace(model, name, layer)
        diff = None
        if inputs is not None:
            flops_after = count_flops(model, inputs)[1]
            for r in rows:
                if r.converted:
                    r.flops_before = flops_before.get(r.name, 0)
                    r.flops_after = flops_after.get(r.name, 0)
            after_out = _run(model, inputs)
            if isinstance(before_out, Tensor) and isinstance(after_out, Tensor):
                diff = float((after_out - before_out).abs().max())
    finally:
        model.train(was_training)
    return ConversionReport(method, rows, diff)


def conv_obstacle(module: nn.Module, *, dilation: bool = True, groups: bool = True) -> str:
    """Why ``module`` is not a convolution a conversion can take ('' when it is): not a
    ``Conv2d``, padding given as a string, a padding mode other than zeros, and, for the
    conversions that cannot take them, dilation (``dilation=False``) or groups
    (``groups=False``)."""
    if not isinstance(module, nn.Conv2d):
        return f"{type(module).__name__} is not a Conv2d"
    if isinstance(module.padding, str):
        return f"padding={module.padding!r}: give the padding as numbers"
    if module.padding_mode != "zeros":
        return f"padding_mode={module.padding_mode!r}: only zero padding"
    if not dilation and module.dilation != (1, 1):
        return f"dilation {module.dilation}: only undilated convolutions"
    if not groups and module.groups != 1:
        return f"groups={module.groups}: only ungrouped convolutions"
    return ""


def plain_conv(module: nn.Conv2d) -> nn.Conv2d:
    """The conv with any parametrization (mask, shared weights) baked into a plain weight (a
    copy), or the conv itself when it has none."""
    from squeezer.core.modules import baked_copy

    return baked_copy(module) if hasattr(module, "parametrizations") else module


@torch.no_grad()
def _run(model: nn.Module, inputs: tuple[Tensor, ...] | None) -> Any:
    return None if inputs is None else model(*inputs)
