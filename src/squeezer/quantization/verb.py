"""``quantize_``: the quantization verb, dispatching on the config's type."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from torch import Tensor, nn

from squeezer.core import Report, apply, handler_for


def quantize_(
    model: nn.Module,
    config: object,
    example_inputs: Tensor | tuple[Tensor, ...] | None = None,
    *,
    data: Iterable[tuple[Tensor, Tensor]] | None = None,
) -> Report:
    """Quantize (or share) ``model``'s weights in place by the method ``config`` names.

    Args:
        model: the network.
        config: a quantization method, e.g. :class:`~squeezer.quantization.KMeansSharing`.
        example_inputs: inputs for methods that trace or calibrate.
        data: calibration batches for methods that need them.

    Returns:
        The method's report (``format()``, ``to_dict()``; per-layer reports index by name).

    Raises:
        ConfigError: ``config`` is not a quantization method.
    """
    return apply("quantize", model, config, example_inputs, data=data)


def quantize(
    model: nn.Module,
    config: object,
    example_inputs: Tensor | tuple[Tensor, ...] | None = None,
    *,
    calibration: Any = None,
    progress: bool | None = None,
) -> nn.Module:
    """A quantized copy of ``model`` by the method ``config`` names, for methods that rewrite
    the whole graph (:class:`~squeezer.quantization.Int8`); ``model`` is left untouched.

    Args:
        model: the float32 network.
        config: the method, e.g. ``Int8(backend="onnxruntime", observer="entropy")``.
        example_inputs: inputs to trace with (a batch of one or more).
        calibration: batches, a loader or a dataset of ``(inputs, labels)``, or bare input
            batches, for the activation ranges.
        progress: a progress bar over calibration (default: when standard error is a
            terminal).

    Returns:
        The quantized model (a :class:`~squeezer.quantization.QuantizedModel`, whose
        ``report`` says what was done).

    Raises:
        ConfigError: ``config`` is not such a method, or calibration data is missing.
        ExportError: the model cannot be traced or quantized (with the reason).
        BackendError: torchao or ONNX Runtime is not installed.
    """
    handler = handler_for("quantize-copy", config)
    return handler(model, config, example_inputs, calibration=calibration, progress=progress)
