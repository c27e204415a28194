"""``quantize_``: the quantization verb, dispatching on the config's type."""

from __future__ import annotations

from collections.abc import Iterable

from torch import Tensor, nn

from squeezer.core import Report, apply


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
