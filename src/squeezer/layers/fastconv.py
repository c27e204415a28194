"""Convolutions computed by fast algorithms, with the same weights and outputs as ``nn.Conv2d``.

- :class:`WinogradConv2d`: Winograd's minimal filtering F(2x2, 3x3) (Lavin & Gray 2016). Each
  4x4 input tile and 3x3 filter are transformed (``B^T d B``, ``G g G^T``), multiplied
  element-wise and summed over input channels (16 independent matrix products, one per tile
  position), and transformed back (``A^T m A``) into a 2x2 output tile: 16 multiplications
  where direct convolution needs 36, 2.25x fewer.
- :class:`FFTConv2d`: convolution as a product in the Fourier domain (Mathieu, Henaff & LeCun
  2014): the padded input and the zero-padded kernel are transformed with ``torch.fft.rfft2``,
  multiplied and summed over input channels per frequency, and transformed back. Any kernel
  size; its cost does not grow with the kernel's area.

Both keep ``weight`` and ``bias`` exactly as ``nn.Conv2d`` stores them (same names and
shapes), so a converted layer loads the original's state dict, and they accept ``groups``.
Winograd takes stride 1 and dilation 1 only (F(2x2, 3x3) is defined for them); FFT takes
dilation 1 and computes a strided convolution at stride 1 before subsampling (exact, no faster).
"""

from __future__ import annotations

import math
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from squeezer.core.spec import register_layer

# F(2x2, 3x3) transforms (Lavin & Gray 2016, section 4.1), for cross-correlation as in CNNs
_BT = torch.tensor(
    [[1.0, 0.0, -1.0, 0.0], [0.0, 1.0, 1.0, 0.0], [0.0, -1.0, 1.0, 0.0], [0.0, 1.0, 0.0, -1.0]]
)
_G = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])
_AT = torch.tensor([[1.0, 1.0, 1.0, 0.0], [0.0, 1.0, -1.0, -1.0]])


def _pair(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


C = TypeVar("C", bound="ConvLike")


class ConvLike(nn.Module):
    """Holds a convolution's weight, bias and geometry as ``nn.Conv2d`` does."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Any,
        stride: Any = 1,
        padding: Any = 0,
        groups: int = 1,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"groups={groups} must divide in_channels={in_channels} and "
                f"out_channels={out_channels}"
            )
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size, self.stride, self.padding = (
            _pair(kernel_size), _pair(stride), _pair(padding)
        )  # fmt: skip
        ref = nn.Conv2d(in_channels, out_channels, self.kernel_size, groups=groups, bias=bias)
        self.weight = nn.Parameter(ref.weight.detach().clone())
        self.bias = nn.Parameter(ref.bias.detach().clone()) if bias else None

    def spec_args(self) -> dict[str, Any]:
        return {
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "kernel_size": list(self.kernel_size),
            "stride": list(self.stride),
            "padding": list(self.padding),
            "groups": self.groups,
            "bias": self.bias is not None,
        }

    @staticmethod
    def check_padding(conv: nn.Conv2d) -> None:
        """Refuse (``ValueError``) a conv whose padding is not numbers of zeros."""
        if isinstance(conv.padding, str):
            raise ValueError(f"padding={conv.padding!r}: give the padding as numbers")
        if conv.padding_mode != "zeros":
            raise ValueError(f"padding_mode={conv.padding_mode!r}: only zero padding")

    def copy_weights_(self: C, conv: nn.Conv2d) -> C:
        """Take ``conv``'s weight and bias (and its dtype and device); returns ``self``."""
        with torch.no_grad():
            self.weight.copy_(conv.weight)
            if conv.bias is not None:
                self.bias.copy_(conv.bias)  # type: ignore[union-attr]
        return self.to(conv.weight)

    @classmethod
    def from_conv(cls: type[C], conv: nn.Conv2d) -> C:
        """The same convolution as ``conv`` (weights copied)."""
        cls.check_padding(conv)
        return cls(
            conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
            conv.groups, conv.bias is not None,
        ).copy_weights_(conv)  # fmt: skip

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, groups={self.groups}"
        )

    def _cached(self, name: str, make: Any, *key: Any) -> Tensor:
        """``make()``, kept while the layer is in inference (eval mode, no gradients) and its
        weight unchanged; computed afresh whenever it trains."""
        if self.training or torch.is_grad_enabled():
            return make()
        full = (name, self.weight._version, self.weight.data_ptr(), self.weight.dtype, *key)
        cache = self.__dict__.setdefault("_transform_cache", {})
        if full not in cache:
            if len(cache) > 8:
                cache.clear()
            cache[full] = make()
        return cache[full]

    def _out_size(self, h: int, w: int) -> tuple[int, int]:
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        return (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1


@register_layer
class WinogradConv2d(ConvLike):
    """A 3x3, stride-1 convolution computed by Winograd's F(2x2, 3x3) (see the module).

    Example:
        >>> conv = nn.Conv2d(16, 32, 3, padding=1)
        >>> fast = WinogradConv2d.from_conv(conv)  # fast(x) equals conv(x) to float rounding
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Any = 3,
        stride: Any = 1,
        padding: Any = 0,
        groups: int = 1,
        bias: bool = True,
    ) -> None:
        if _pair(kernel_size) != (3, 3) or _pair(stride) != (1, 1):
            raise ValueError(
                f"Winograd F(2x2, 3x3) needs a 3x3 kernel at stride 1, got kernel "
                f"{_pair(kernel_size)} and stride {_pair(stride)}"
            )
        super().__init__(in_channels, out_channels, 3, 1, padding, groups, bias)

    def transformed_weight(self) -> Tensor:
        """``G g G^T`` for every filter, as ``(16, 1, groups, out/groups, in/groups)``
        (cached in inference while the weight is unchanged)."""

        def make() -> Tensor:
            g = self.groups
            G = _G.to(self.weight)
            # (4 columns, 4 rows, O, C/g): the order the input transform leaves the tiles in
            u = torch.einsum("ij,ocjk,lk->lioc", G, self.weight, G)
            o, c = self.out_channels // g, self.in_channels // g
            return u.reshape(16, 1, g, o, c)

        return self._cached("winograd", make)

    def forward(self, x: Tensor) -> Tensor:
        n, _, h, w = x.shape
        ho, wo = self._out_size(h, w)
        th, tw = -(-ho // 2), -(-wo // 2)  # output tiles
        ph, pw = self.padding
        # pad so the 4x4 tiles at stride 2 cover every output (the extra rows are cropped)
        x = F.pad(x, (pw, pw + 2 * tw + 2 - (w + 2 * pw), ph, ph + 2 * th + 2 - (h + 2 * ph)))
        tiles = x.unfold(2, 4, 2).unfold(3, 4, 2)  # (n, C, th, tw, 4, 4), a view
        # B^T d B by additions, on the rows then on the columns of every tile
        rows = _bt(tiles, -2)  # (4 rows, n, C, th, tw, 4 columns)
        v = _bt(rows, -1)  # (4 columns, 4 rows, n, C, th, tw)
        g = self.groups
        v = v.reshape(16, n, g, self.in_channels // g, th * tw)
        m = torch.matmul(self.transformed_weight(), v)  # (16, n, g, O/g, th*tw)
        m = m.reshape(4, 4, n, self.out_channels, th, tw)
        y = _at(_at(m, 0), 1)  # A^T m A: (2 columns, 2 rows, n, O, th, tw)
        y = y.permute(2, 3, 4, 1, 5, 0).reshape(n, self.out_channels, 2 * th, 2 * tw)
        y = y[:, :, :ho, :wo]
        if self.bias is not None:
            y = y + self.bias.view(1, -1, 1, 1)
        return y.contiguous()


def _bt(t: Tensor, dim: int) -> Tensor:
    """``B^T`` applied along ``dim`` (of size 4), the result's 4 stacked first."""
    d0, d1, d2, d3 = t.unbind(dim)
    return torch.stack([d0 - d2, d1 + d2, d2 - d1, d1 - d3])


def _at(t: Tensor, dim: int) -> Tensor:
    """``A^T`` applied along ``dim`` (of size 4), in place of it."""
    m0, m1, m2, m3 = t.unbind(dim)
    return torch.stack([m0 + m1 + m2, m1 - m2 - m3], dim)


@register_layer
class FFTConv2d(ConvLike):
    """A convolution computed in the Fourier domain (see the module).

    Example:
        >>> conv = nn.Conv2d(16, 32, 5, padding=2)
        >>> fast = FFTConv2d.from_conv(conv)  # fast(x) equals conv(x) to float rounding
    """

    def forward(self, x: Tensor) -> Tensor:
        n = x.shape[0]
        (kh, kw), (ph, pw) = self.kernel_size, self.padding
        x = F.pad(x, (pw, pw, ph, ph))
        hp, wp = x.shape[-2:]
        g = self.groups
        c, o = self.in_channels // g, self.out_channels // g
        xf = torch.fft.rfft2(x, s=(hp, wp))  # (n, C, hp, wp//2+1)
        # correlation: the conjugate of the kernel's transform (a circular correlation, whose
        # first hp-kh+1 rows and wp-kw+1 columns never wrap around)
        freqs = xf.shape[-2] * xf.shape[-1]

        def make() -> Tensor:
            wf = torch.fft.rfft2(self.weight, s=(hp, wp)).conj()  # (O, C/g, hp, wf)
            # (F, g, C/g, O/g), contiguous: batched products of strided complex views are
            # more than ten times slower
            return wf.reshape(g, o, c, freqs).permute(3, 0, 2, 1).contiguous()

        wf = self._cached("fft", make, hp, wp)
        xf = xf.reshape(n, g, c, freqs).permute(3, 1, 0, 2).contiguous()  # (F, g, n, C/g)
        yf = torch.matmul(xf, wf)  # (F, g, n, O/g)
        yf = yf.permute(2, 1, 3, 0).reshape(n, self.out_channels, hp, -1)
        y = torch.fft.irfft2(yf, s=(hp, wp))[:, :, : hp - kh + 1, : wp - kw + 1]
        sh, sw = self.stride
        if (sh, sw) != (1, 1):
            y = y[:, :, ::sh, ::sw]
        if self.bias is not None:
            y = y + self.bias.view(1, -1, 1, 1)
        return y.contiguous()

    def flops(self, height: int, width: int, batch: int = 1) -> int:
        """Real floating-point operations of one forward pass on ``batch`` inputs of
        ``height x width`` (the counter of ``torch.utils.flop_counter`` has no formula for
        FFTs): ``2.5 N log2 N`` per real FFT of ``N`` points (half a complex one, whose count
        is ``5 N log2 N``), for the inputs, the kernels and the outputs, and 8 per complex
        multiply-add of the per-frequency channel sums."""
        hp, wp = height + 2 * self.padding[0], width + 2 * self.padding[1]
        size = hp * wp
        fft = 2.5 * size * math.log2(max(size, 2))
        freqs = hp * (wp // 2 + 1)
        products = 8 * freqs * batch * self.out_channels * (self.in_channels // self.groups)
        transforms = fft * (batch * self.in_channels + self.weight.shape[0] * self.weight.shape[1]
                            + batch * self.out_channels)  # fmt: skip
        return int(transforms + products)
