"""Conversions of trained convolutions to fast algorithms with the same outputs: Winograd
F(2x2, 3x3) (Lavin & Gray 2016) and FFT convolution (Mathieu et al. 2014), the layers of
:mod:`squeezer.layers.fastconv`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from torch import nn

from squeezer.conversion import ConversionReport, conv_obstacle, convert_layers_, plain_conv
from squeezer.core import LayerSelection, register_handler
from squeezer.layers.fastconv import FFTConv2d, WinogradConv2d


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
        why = conv_obstacle(module, dilation=False)
        if why:
            return why
        assert isinstance(module, nn.Conv2d)
        if module.kernel_size != (3, 3):
            return f"kernel {module.kernel_size}: F(2x2, 3x3) needs 3x3"
        if module.stride != (1, 1):
            return f"stride {module.stride}: F(2x2, 3x3) needs stride 1"
        return WinogradConv2d.from_conv(plain_conv(module))

    return convert_layers_(model, config, make, example_inputs, "Winograd F(2x2, 3x3)")


@register_handler("convert", FFTConv)
def convert_fft_(
    model: nn.Module, config: FFTConv, example_inputs: Any = None, *, data: Any = None
) -> ConversionReport:
    def make(name: str, module: nn.Module) -> nn.Module | str:
        why = conv_obstacle(module, dilation=False)
        if why:
            return why
        assert isinstance(module, nn.Conv2d)
        if min(module.kernel_size) < config.min_kernel:
            return f"kernel {module.kernel_size} below min_kernel={config.min_kernel}"
        return FFTConv2d.from_conv(plain_conv(module))

    return convert_layers_(model, config, make, example_inputs, "FFT convolution")
