"""Perforation (Figurnov et al. 2016): convolutions evaluated at a subset of their output
positions, the rest filled from the nearest evaluated one
(:class:`~squeezer.layers.PerforatedConv2d`).

    sq.prune_(model, sq.pruning.Perforation(rate=2.0))               # every Conv2d, grid mask
    sq.prune_(model, sq.pruning.Perforation(per_layer={"conv2": 4.0}, mask="uniform"))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import nn

from squeezer.config import check
from squeezer.conversion import ConversionReport, conv_obstacle, convert_layers_, plain_conv
from squeezer.core import LayerSelection, register_handler
from squeezer.layers.perforated import MASKS, PerforatedConv2d


@dataclass(frozen=True)
class Perforation(LayerSelection):
    """Which convolutions to perforate, and how much.

    Attributes:
        rate: output positions per evaluated one (2.0: half the positions evaluated), >= 1.
        per_layer: layer name or pattern -> rate (``rate`` applies to the layers not named;
            a rate of 1 leaves a layer as it is).
        mask: ``"grid"`` (rows and columns, Figurnov's grid mask) or ``"uniform"`` (random
            positions).
        seed: the masks' seed.
        layers, exclude, layer_types: which layers (default: every Conv2d).
    """

    rate: float = 2.0
    per_layer: dict[str, float] = field(default_factory=dict)
    mask: str = "grid"
    seed: int = 0

    default_types: ClassVar[tuple[str, ...]] = ("Conv2d",)

    def validate(self) -> None:
        super().validate()
        for name, r in [("rate", self.rate), *self.per_layer.items()]:
            check(isinstance(r, (int, float)) and r >= 1,
                  f"Perforation: the rate of {name} must be >= 1 (positions per evaluated one)"
                  f", got {r}")  # fmt: skip
        check(self.mask in MASKS, f"Perforation: mask must be one of {', '.join(MASKS)}")


@register_handler("prune", Perforation)
def perforate_(
    model: nn.Module, config: Perforation, example_inputs: Any = None, *, data: Any = None
) -> ConversionReport:
    """Replace the selected convolutions by perforated ones (in place; recorded).

    Returns:
        Per layer: converted, or why not; FLOPs before and after on the example inputs (the
        model's ``input_shape`` when not given), and the largest change of the output.
    """

    def make(name: str, module: nn.Module) -> nn.Module | str:
        why = conv_obstacle(module)
        if why:
            return why
        assert isinstance(module, nn.Conv2d)
        rate = float(config.value_for(name, config.rate))
        if rate == 1:
            return "rate 1: nothing to perforate"
        return PerforatedConv2d.from_conv(plain_conv(module), rate, config.mask, config.seed)

    method = f"perforation ({config.mask} mask)"
    return convert_layers_(model, config, make, example_inputs, method)
