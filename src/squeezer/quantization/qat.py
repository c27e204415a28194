"""k-bit quantization-aware training (S6, S7): QAT, LSQ, DoReFa-Net and Gupta's fixed point.

``sq.quantize_(model, config, data=batches)`` replaces every selected Conv and Linear layer by
its quantized twin (:mod:`squeezer.quantization.fake`), calibrates the activation quantizers on
a few batches and returns a per-layer report; the model then trains with ``sq.fit`` as it is
(straight-through estimator), evaluates as it will run, and saves to ``.sqz`` with its weights
packed at their bit-width::

    sq.quantize_(model, sq.quantization.LSQ(bits=4), data=train_batches)
    sq.fit(model, train, epochs=2, lr=0.01)
    sq.save(model, "r20-lsq4.sqz")             # 4-bit codes + scales, bit-exact on load

Without training, the same call is post-training quantization at k bits (weights rounded,
activation ranges calibrated), the baseline QAT is measured against. An 8-bit ``QAT`` model
converts to a real int8 backend with ``sq.quantize(model, Int8(...), x, calibration=...)``.

Bit-widths: ``bits`` for weights and activations, ``weight_bits`` / ``input_bits`` to set them
apart, ``per_layer`` for mixed precision (name or pattern -> bits), and ``first_last_bits``
for the first and last layers, which papers keep at 8 bits or more (default 8).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from squeezer.config import check
from squeezer.core import LayerSelection, PerLayerReport, register_handler
from squeezer.core.arch import record, replace, replacement
from squeezer.core.inputs import as_tuple
from squeezer.core.modules import set_module
from squeezer.errors import ModelError
from squeezer.quantization.fake import (
    QUANT_LAYERS,
    ROUNDINGS,
    FrozenValues,
    FrozenWeight,
    InputQuantizer,
    QuantLayer,
)


@dataclass(frozen=True)
class KBit(LayerSelection):
    """What every k-bit method shares (see the module documentation).

    Attributes:
        bits: weight and activation bits.
        weight_bits, input_bits: set one of the two apart from ``bits``.
        per_layer: layer name or pattern -> bits (weights and inputs), for mixed precision.
        first_last_bits: bits of the first and last selected layers (None: as the others).
        quantize_inputs: also quantize each layer's input activations (default).
        model_input: quantize the first layer's input, the model's input, too (default: no;
            images are 8-bit data already).
        max_batches: calibration batches used at most.
        layers, exclude, layer_types: which layers (Conv1d, Conv2d and Linear by default).
    """

    bits: int = 8
    weight_bits: int | None = None
    input_bits: int | None = None
    per_layer: dict[str, int] = field(default_factory=dict)
    first_last_bits: int | None = 8
    quantize_inputs: bool = True
    model_input: bool = False
    max_batches: int = 8

    default_types: ClassVar[tuple[str, ...]] = ("Conv1d", "Conv2d", "Linear")
    method: ClassVar[str] = "qat"
    min_bits: ClassVar[int] = 2
    max_bits: ClassVar[int] = 8

    def validate(self) -> None:
        super().validate()
        name = type(self).__name__
        lo, hi = self.min_bits, self.max_bits
        for where, b in [
            ("bits", self.bits),
            ("weight_bits", self.weight_bits),
            ("input_bits", self.input_bits),
            ("first_last_bits", self.first_last_bits),
            *self.per_layer.items(),
        ]:
            check(
                b is None or (isinstance(b, int) and not isinstance(b, bool) and lo <= b <= hi),
                f"{name}: {where} must be an integer in {lo}..{hi}, got {b!r}",
            )
        check(self.max_batches >= 1, f"{name}: max_batches must be >= 1")

    def bits_for(self, name: str, end: bool) -> tuple[int, int]:
        """``(weight bits, input bits)`` of layer ``name`` (``end``: first or last layer)."""
        b = self.value_for(name, None)
        if b is not None:
            return b, b
        if end and self.first_last_bits is not None:
            return self.first_last_bits, self.first_last_bits
        return self.weight_bits or self.bits, self.input_bits or self.bits

    def layer_args(self) -> dict[str, Any]:
        return {"method": self.method}

    def args_for(self, weight_bits: int) -> dict[str, Any]:
        """The layer arguments of a layer at ``weight_bits`` (binary and ternary methods
        hand layers at other bits to uniform QAT)."""
        return self.layer_args()


@dataclass(frozen=True)
class QAT(KBit):
    """Quantization-aware training as integer kernels run it: symmetric weights with one scale
    per output channel (``per_channel``), affine per-tensor activations (MSE-calibrated
    range, then a moving average in training). At 8 bits it converts to the int8 backends."""

    per_channel: bool = True

    def layer_args(self) -> dict[str, Any]:
        return {"method": "qat", "per_channel": self.per_channel}


@dataclass(frozen=True)
class LSQ(KBit):
    """Learned step size quantization (Esser et al. 2020): the step of each weight tensor
    (or output channel, ``per_channel``) and each activation is trained."""

    per_channel: bool = False
    method: ClassVar[str] = "lsq"

    def layer_args(self) -> dict[str, Any]:
        return {"method": "lsq", "per_channel": self.per_channel}


@dataclass(frozen=True)
class DoReFa(KBit):
    """DoReFa-Net (Zhou et al. 2016): ``tanh``-normalized k-bit weights (1 bit: sign times
    mean magnitude), activations clipped to [0, 1] and quantized to k bits."""

    method: ClassVar[str] = "dorefa"
    min_bits: ClassVar[int] = 1

    def layer_args(self) -> dict[str, Any]:
        return {"method": "dorefa", "per_channel": False}


@dataclass(frozen=True)
class FixedPoint(KBit):
    """Fixed-point training (Gupta et al. 2015): weights kept in ``<IL, FL>`` fixed point of
    ``bits`` (word length) with ``fraction_bits`` after the point, every update rounded back
    by ``rounding`` (``"stochastic"`` or ``"nearest"``); layer inputs rounded to
    ``input_fraction_bits`` (default: ``fraction_bits``) the same way.
    """

    bits: int = 16
    fraction_bits: int = 14
    input_fraction_bits: int | None = None
    rounding: str = "stochastic"
    first_last_bits: int | None = None
    method: ClassVar[str] = "fixed"
    min_bits: ClassVar[int] = 2
    max_bits: ClassVar[int] = 32

    def validate(self) -> None:
        super().validate()
        check(self.rounding in ROUNDINGS, f"FixedPoint: rounding must be one of {ROUNDINGS}")
        check(0 <= self.fraction_bits < 64, "FixedPoint: fraction_bits must be in 0..63")
        check(
            self.input_fraction_bits is None or 0 <= self.input_fraction_bits < 64,
            "FixedPoint: input_fraction_bits must be in 0..63",
        )

    def layer_args(self) -> dict[str, Any]:
        fl = self.fraction_bits
        return {
            "method": "fixed",
            "per_channel": False,
            "fraction_bits": fl,
            "input_fraction_bits": fl
            if self.input_fraction_bits is None
            else self.input_fraction_bits,
            "rounding": self.rounding,
        }


def _quantizable(module: nn.Module) -> type[nn.Module] | None:
    """The quantized class for ``module``, if it is a plain Conv1d/Conv2d/Linear."""
    if isinstance(module, QuantLayer):
        return None
    for base, quant in QUANT_LAYERS.items():
        if type(module) is base:
            return quant
    return None


def _quantized_twin(module: nn.Module, cls: type[nn.Module], args: dict[str, Any]) -> nn.Module:
    from squeezer.core.spec import module_spec

    spec = module_spec(module)["args"]
    new = cls(**spec, **args)
    with torch.no_grad():
        new.weight.copy_(module.weight)
        if module.bias is not None:
            new.bias.copy_(module.bias)
    return new.to(module.weight.device).train(module.training)


@register_handler("quantize", QAT)
@register_handler("quantize", LSQ)
@register_handler("quantize", DoReFa)
@register_handler("quantize", FixedPoint)
def prepare_kbit_(
    model: nn.Module,
    config: KBit,
    example_inputs: Tensor | tuple[Tensor, ...] | None = None,
    *,
    data: Iterable[Any] | None = None,
) -> PerLayerReport:
    """Make ``model`` a k-bit fake-quantized model, in place, ready for ``sq.fit``.

    Args:
        model: the float network.
        config: :class:`QAT`, :class:`LSQ`, :class:`DoReFa` or :class:`FixedPoint`.
        example_inputs: used to calibrate when no ``data`` is given.
        data: calibration batches (``(inputs, labels)`` or bare inputs); ``max_batches`` of
            them set the activation ranges and steps. Without data and example inputs the
            quantizers initialize on the first batch they see.

    Returns:
        Per layer: ``weight_bits`` and ``input_bits`` (None: input left float).

    Raises:
        ModelError: no Conv or Linear layer is selected, or the model is quantized already.
    """
    chosen = [(n, m, _quantizable(m)) for n, m in config.select(model)]
    if any(isinstance(m, QuantLayer) for _, m, _ in chosen):
        raise ModelError(f"quantize_: {type(config).__name__}: the model is already quantized")
    chosen = [(n, m, cls) for n, m, cls in chosen if cls is not None]
    if not chosen:
        raise ModelError(
            f"quantize_: {type(config).__name__}: no plain Conv1d, Conv2d or Linear layer "
            "among the selected ones"
        )
    report = {}
    last = len(chosen) - 1
    for i, (name, module, cls) in enumerate(chosen):
        wb, ib = config.bits_for(name, end=i in (0, last))
        quantize_input = config.quantize_inputs and (i > 0 or config.model_input)
        args = {
            **config.args_for(wb),
            "weight_bits": wb,
            "input_bits": ib if quantize_input else None,
        }
        replace(model, name, _quantized_twin(module, cls, args))
        report[name] = {"weight_bits": wb, "input_bits": args["input_bits"]}
    binary_inputs = config.quantize_inputs and getattr(config, "binary_inputs", False)
    replace_relu = binary_inputs and getattr(config, "replace_relu", False)
    replaced = _relus_to_hardtanh(model) if replace_relu else []
    batches = _calibration(data, example_inputs, config.max_batches)
    if batches:
        calibrate(model, batches)
    warnings = []
    for name, _, _ in chosen:
        layer = model.get_submodule(name)
        seen = getattr(layer.input_quantizer, "saw_negative", None)
        if batches and seen is not None and not bool(seen):
            warnings.append(
                f"{name}: its input was never negative in calibration, so binarized it is "
                "constant (a ReLU applied as a function before it?)"
            )
    extra: dict[str, Any] = {"calibration_batches": len(batches)}
    if replaced:
        extra["relu_to_hardtanh"] = replaced
    if warnings:
        extra["warnings"] = warnings
    return PerLayerReport(f"{type(config).__name__} fake quantization", report, **extra)


def _relus_to_hardtanh(model: nn.Module) -> list[str]:
    """Replace every ``nn.ReLU`` / ``nn.ReLU6`` module by ``nn.Hardtanh`` (binary inputs need
    signed activations); returns the names."""
    names = []
    for name, module in list(model.named_modules()):
        if name and type(module) in (nn.ReLU, nn.ReLU6):
            new = nn.Hardtanh()
            replace(model, name, new)
            names.append(name)
    return names


def _calibration(data: Any, example_inputs: Any, max_batches: int) -> list[tuple[Tensor, ...]]:
    if data is not None:
        from squeezer.quantization.int8 import calibration_batches

        return calibration_batches(data, max_batches)
    if example_inputs is not None:
        return [as_tuple(example_inputs)]
    return []


def calibrate(model: nn.Module, batches: Iterable[tuple[Tensor, ...]]) -> int:
    """Set the activation quantizers' ranges (and LSQ steps) of ``model`` from ``batches``.

    Returns the number of examples seen.
    """
    quantizers = [m for m in model.modules() if isinstance(m, InputQuantizer)]
    was = model.training
    seen = 0
    model.eval()
    try:
        for q in quantizers:
            q.calibrating = True
        with torch.no_grad():
            for inputs in batches:
                model(*inputs)
                seen += int(inputs[0].shape[0])
        for q in quantizers:
            q.finish_calibration()
    finally:
        for q in quantizers:
            q.calibrating = False
        model.train(was)
    return seen


def quantized_layers(model: nn.Module) -> list[tuple[str, QuantLayer]]:
    """``(name, layer)`` of every fake-quantized layer of ``model``."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, QuantLayer)]


def freeze_(model: nn.Module) -> nn.Module:
    """Store every quantized layer's weight as its quantized values (in place).

    After this the weight quantizers are :class:`~squeezer.quantization.fake.FrozenWeight`:
    the forward is unchanged (bit for bit), and ``integer()`` returns the k-bit codes with
    their scales and zero points, which ``.sqz`` packs. Training further is no longer QAT.
    """
    for name, layer in quantized_layers(model):
        if isinstance(layer.weight_quantizer, FrozenWeight):
            continue
        wq = layer.weight_quantizer
        if not getattr(wq, "affine", True):  # TTQ: store the values, a small codebook
            if isinstance(wq, FrozenValues):
                continue
            was = wq.training
            wq.eval()
            with torch.no_grad():
                values = layer.quantized_weight().detach().clone()
                layer.weight.copy_(values)
            wq.train(was)
            layer.weight_quantizer = FrozenValues(wq.bits)
            layer.frozen_values = True
            record(model, [replacement(name, layer)])  # type: ignore[arg-type]
            continue
        was = wq.training
        wq.eval()  # fixed point: round to nearest, do not edit the latent weight
        with torch.no_grad():
            q, scale, zp = wq.integer(layer.weight)
            values = layer.quantized_weight().detach().clone()
        wq.train(was)
        frozen = FrozenWeight(wq.bits, wq.lo, scale.numel())
        frozen.scale.copy_(scale)
        frozen.zero_point.copy_(zp)
        if scale.numel() > 1:
            layer.per_channel = True
        layer.frozen_lo = wq.lo
        layer.weight_quantizer = frozen
        with torch.no_grad():
            layer.weight.copy_(values)
        check_codes = frozen.integer(layer.weight)[0]
        if not torch.equal(check_codes, q):
            raise ModelError(f"freeze_: {name}: the quantized weight does not round-trip")
        record(model, [replacement(name, layer)])  # type: ignore[arg-type]
    return model


def frozen_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with :func:`freeze_` applied (``model`` is left training-ready)."""
    return freeze_(copy.deepcopy(model))


def dequantize_(model: nn.Module) -> nn.Module:
    """Replace every fake-quantized layer by the plain layer it computes with: the quantized
    weight as a float weight, the input quantizer dropped (in place). For converting a QAT
    model to a real int8 backend, which quantizes the activations itself."""
    for name, layer in quantized_layers(model):
        plain = next(base for base, q in QUANT_LAYERS.items() if isinstance(layer, q))
        args = {k: v for k, v in layer.spec_args().items() if k not in layer.quant_args()}
        if plain is nn.Linear:
            new = nn.Linear(args["in_features"], args["out_features"], args["bias"])
        else:
            args = {k: tuple(v) if isinstance(v, list) else v for k, v in args.items()}
            new = plain(**args)
        with torch.no_grad():
            wq = layer.weight_quantizer
            was = wq.training
            wq.eval()
            new.weight.copy_(layer.quantized_weight())
            wq.train(was)
            if layer.bias is not None:
                new.bias.copy_(layer.bias)
        new.train(layer.training)
        set_module(model, name, new)
        record(model, [replacement(name, new)])
    return model


def weight_codes(model: nn.Module) -> dict[str, tuple[int, int, Tensor, Tensor]]:
    """For each frozen quantized layer: ``name.weight -> (bits, lo, scale, zero_point)``, what
    the ``.sqz`` coder needs to pack its weight as k-bit codes."""
    out = {}
    for name, layer in quantized_layers(model):
        wq = layer.weight_quantizer
        if isinstance(wq, FrozenWeight):
            key = f"{name}.weight" if name else "weight"
            out[key] = (wq.bits, wq.lo, wq.scale.detach().clone(), wq.zero_point.detach().clone())
    return out
