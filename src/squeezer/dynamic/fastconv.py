"""Conversions of trained convolutions to fast algorithms with the same outputs: Winograd
F(2x2, 3x3) (Lavin & Gray 2016) and FFT convolution (Mathieu et al. 2014), the layers of
:mod:`squeezer.layers.fastconv`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from torch import nn

from squeezer.conversion import ConversionReport, convert_layers_
from squeezer.core import LayerSelection, register_handler
from squeezer.core.modules import baked_copy
from squeezer.layers.fastconv import FFTConv2d, WinogradConv2d


def _common(module: nn.Module) -> str:
    """Why a conv cannot be converted at all ('' when it can)."""
    if not isinstance(module, nn.Conv2d):
        return f"{type(module).__name__} is not a Conv2d"
    if module.dilation != (1, 1):
        return f"dilation {module.dilation}: only undilated convolutions"
    if isinstance(module.padding, str):
        return f"padding={module.padding!r}: give the padding as numbers"
    if module.padding_mode != "zeros":
        return f"padding_mode={module.padding_mode!r}: only zero padding"
    return ""


def _plain(module: nn.Conv2d) -> nn.Conv2d:
    """The conv with any parametrization (mask, shared weights) baked into a plain weight."""
    return baked_copy(module) if hasattr(module, "parametrizations") else module


@dataclass(frozen=True)
class Winograd(LayerSelection):
    """Replace 3x3, stride-1 convolutions by :class:`~squeezer.layers.WinogradConv2d`
    (same weights; outputs equal to float rounding; 2.25x fewer multiplications).

    Attributes:
        layers, exclude, layer_types: which layers (default: every Conv2d; the others are
            reported with the reason they stay).
    """

    default_types: ClassVar[tuple[str, ...]] = ("Conv2d",)


@dataclass(frozen=True)
class FFTConv(LayerSelection):
    """Replace convolutions by :class:`~squeezer.layers.FFTConv2d` (same weights; outputs
    equal to float rounding).

    Attributes:
        min_kernel: convert only kernels at least this wide (FFT pays off for large kernels;
            default 1: every size).
        layers, exclude, layer_types: which layers (default: every Conv2d).
    """

    min_kernel: int = 1
    default_types: ClassVar[tuple[str, ...]] = ("Conv2d",)

    def validate(self) -> None:
        super().validate()
        from squeezer.config import check

        check(self.min_kernel >= 1, "FFTConv: min_kernel must be >= 1")


@register_handler("convert", Winograd)
def convert_winograd_(
    model: nn.Module, config: Winograd, example_inputs: Any = None, *, data: Any = None
) -> ConversionReport:
    def make(name: str, module: nn.Module) -> nn.Module | str:
        why = _common(module)
        if why:
            return why
        assert isinstance(module, nn.Conv2d)
        if module.kernel_size != (3, 3):
            return f"kernel {module.kernel_size}: F(2x2, 3x3) needs 3x3"
        if module.stride != (1, 1):
            return f"stride {module.stride}: F(2x2, 3x3) needs stride 1"
        return WinogradConv2d.from_conv(_plain(module))

    return convert_layers_(model, config, make, example_inputs, "Winograd F(2x2, 3x3)")


@register_handler("convert", FFTConv)
def convert_fft_(
    model: nn.Module, config: FFTConv, example_inputs: Any = None, *, data: Any = None
) -> ConversionReport:
    def make(name: str, module: nn.Module) -> nn.Module | str:
        why = _common(module)
        if why:
            return why
        assert isinstance(module, nn.Conv2d)
        if min(module.kernel_size) < config.min_kernel:
            return f"kernel {module.kernel_size} below min_kernel={config.min_kernel}"
        return FFTConv2d.from_conv(_plain(module))

    return convert_layers_(model, config, make, example_inputs, "FFT convolution")
