"""Compact and transferred filters, and the blocks of efficient architectures (family C).

Nonlinearities and transferred filters:

- :class:`CReLU` (Shang et al. 2016): ``[relu(x), relu(-x)]``: a conv with half the filters
  followed by CReLU gives as many channels as the full conv, its negated pairs for free;
- :class:`MultiBias` (Li et al. 2016): every input channel passed through ``K`` learned
  biases before the ReLU, ``K`` output channels per input channel;
- :class:`CyclicSlice`, :class:`CyclicRoll`, :class:`CyclicPool` (Dieleman et al. 2016): the
  input in its four 90-degree rotations stacked on the batch; feature maps of the four
  rotations (turned back) concatenated on the channels; the rotations pooled back into one;
- :class:`P4ConvZ2`, :class:`P4ConvP4`, :class:`P4Pool` (Cohen & Welling 2016): convolutions
  over the group p4 (translations and 90-degree rotations): their outputs rotate and shift
  cyclically with the input, and pooling over the four orientations is invariant;
- :class:`DoublyConv2d` (Zhai et al. 2016): filters are every ``k x k`` patch of larger learned
  meta filters, pooled across the patches of a meta filter.

Blocks of efficient architectures:

- :class:`Fire` (SqueezeNet, Iandola 2016): 1x1 squeeze, then 1x1 and 3x3 expands
  concatenated;
- :class:`SeparableConv2d` (MobileNet, Howard 2017): depthwise ``k x k`` then pointwise 1x1,
  each with BatchNorm and ReLU (``bn=False, relu=False`` gives the bare pair, for conversions);
- :class:`FlattenedConv2d` (Jin et al. 2014): a 1x1 across channels, then ``k x 1`` and
  ``1 x k`` depthwise;
- :class:`ChannelShuffle` and :class:`ShuffleUnit` (ShuffleNet, Zhang 2017): grouped 1x1 convs
  with the channels shuffled between groups;
- :class:`EffNetBlock` (Freeman et al. 2018): a 1x1 bottleneck, depthwise 1x3, 2x1 max
  pooling, depthwise 3x1 and a 2x1-strided pointwise conv;
- :class:`Shift` and :class:`ShiftBlock` (ShiftNet, Wu et al. 2018): channels moved by fixed
  offsets in a ``k x k`` neighbourhood (no parameters, no FLOPs) between two 1x1 convs.

What the conversions of :mod:`squeezer.compact` put in a trained network's place:

- :class:`DepthwiseSeparableConv2d`: depthwise ``k x k`` (``multiplier`` filters per input
  channel) then pointwise 1x1, with the replaced conv's stride, padding and dilation;
- :class:`PairedConv2d`: half the filters, each output channel a scaled copy of one of them
  plus a bias (CReLU's negated pairs when two channels share a filter with opposite signs).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from squeezer.core.spec import register_layer


def _bn_relu(channels: int, bn: bool, relu: bool) -> list[nn.Module]:
    out: list[nn.Module] = []
    if bn:
        out.append(nn.BatchNorm2d(channels))
    if relu:
        out.append(nn.ReLU(inplace=True))
    return out


# --------------------------------------------------------------------- nonlinearities
@register_layer
class CReLU(nn.Module):
    """Concatenated ReLU: ``cat([relu(x), relu(-x)], dim)``; doubles the channels."""

    def __init__(self, dim: int = 1) -> None:
        super().__init__()
        self.dim = dim

    def spec_args(self) -> dict[str, Any]:
        return {"dim": self.dim}

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(torch.cat([x, -x], self.dim))


@register_layer
class MultiBias(nn.Module):
    """Multi-bias activation: ``y[:, c*K + k] = relu(x[:, c] + b[c, k])``, ``K`` biases per
    channel (initialized spread over ``[-spread, spread]``)."""

    def __init__(self, channels: int, biases: int = 4, spread: float = 0.5) -> None:
        super().__init__()
        self.channels, self.biases = channels, biases
        init = torch.linspace(-spread, spread, biases) if biases > 1 else torch.zeros(1)
        self.bias = nn.Parameter(init.repeat(channels, 1))

    def spec_args(self) -> dict[str, Any]:
        return {"channels": self.channels, "biases": self.biases}

    def forward(self, x: Tensor) -> Tensor:
        n, c, *rest = x.shape
        y = x.unsqueeze(2) + self.bias.view(1, c, self.biases, *([1] * len(rest)))
        return F.relu(y).reshape(n, c * self.biases, *rest)


# ----------------------------------------------------------------- cyclic symmetry
def _rot(x: Tensor, k: int) -> Tensor:
    return torch.rot90(x, k, dims=(-2, -1))


@register_layer
class CyclicSlice(nn.Module):
    """``(N, C, H, W)`` -> ``(4N, C, H, W)``: the input rotated by 0, 90, 180, 270 degrees,
    stacked rotation-major on the batch."""

    def spec_args(self) -> dict[str, Any]:
        return {}

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([_rot(x, k) for k in range(4)], 0)


@register_layer
class CyclicRoll(nn.Module):
    """``(4N, C, H, W)`` -> ``(4N, 4C, H, W)``: each rotation's feature maps followed by the
    other three rotations' maps, turned to its orientation (square maps only)."""

    def spec_args(self) -> dict[str, Any]:
        return {}

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != x.shape[-2]:
            raise ValueError(f"CyclicRoll needs square feature maps, got {tuple(x.shape[-2:])}")
        parts = x.chunk(4, 0)
        rolled = []
        for r in range(4):
            # rotation r's view of rotation s: turn s's maps by (r - s) quarter turns
            rolled.append(torch.cat([_rot(parts[(r + j) % 4], -j) for j in range(4)], 1))
        return torch.cat(rolled, 0)


@register_layer
class CyclicPool(nn.Module):
    """``(4N, ...)`` -> ``(N, ...)``: the four rotations' features pooled (``"mean"``,
    ``"max"`` or ``"rms"``); apply after the spatial dimensions are gone (or on maps turned
    back) for invariance."""

    def __init__(self, mode: str = "mean") -> None:
        super().__init__()
        if mode not in ("mean", "max", "rms"):
            raise ValueError(f"CyclicPool mode must be mean, max or rms, got {mode!r}")
        self.mode = mode

    def spec_args(self) -> dict[str, Any]:
        return {"mode": self.mode}

    def forward(self, x: Tensor) -> Tensor:
        stacked = torch.stack(x.chunk(4, 0))
        if self.mode == "mean":
            return stacked.mean(0)
        if self.mode == "max":
            return stacked.amax(0)
        return stacked.square().mean(0).sqrt()


# ------------------------------------------------------------ p4 group convolutions
@register_layer
class P4ConvZ2(nn.Module):
    """Lifting convolution from images to p4: ``(N, C, H, W)`` -> ``(N, O, 4, H, W)``; the
    filter is applied in its four rotations (``out[:, :, r]`` uses the filter turned ``r``
    quarter turns)."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 3, padding: int = 1,
        bias: bool = True,
    ) -> None:  # fmt: skip
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.padding = kernel_size, padding
        ref = nn.Conv2d(in_channels, out_channels, kernel_size, bias=bias)
        self.weight = nn.Parameter(ref.weight.detach().clone())
        self.bias = nn.Parameter(ref.bias.detach().clone()) if bias else None

    def spec_args(self) -> dict[str, Any]:
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": self.kernel_size, "padding": self.padding,
                "bias": self.bias is not None}  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        w = torch.stack([_rot(self.weight, r) for r in range(4)], 1)  # (O, 4, C, k, k)
        y = F.conv2d(x, w.flatten(0, 1), padding=self.padding)
        y = y.view(x.shape[0], self.out_channels, 4, *y.shape[-2:])
        if self.bias is not None:
            y = y + self.bias.view(1, -1, 1, 1, 1)
        return y


@register_layer
class P4ConvP4(nn.Module):
    """Group convolution on p4: ``(N, C, 4, H, W)`` -> ``(N, O, 4, H, W)``. The filter has
    an orientation axis too; for output orientation ``r`` it is turned ``r`` quarter turns
    spatially and its orientation axis shifted cyclically by ``r``."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 3, padding: int = 1,
        bias: bool = True,
    ) -> None:  # fmt: skip
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.padding = kernel_size, padding
        ref = nn.Conv2d(in_channels * 4, out_channels, kernel_size, bias=bias)
        self.weight = nn.Parameter(
            ref.weight.detach().clone().view(out_channels, in_channels, 4, kernel_size, -1)
        )
        self.bias = nn.Parameter(ref.bias.detach().clone()) if bias else None

    def spec_args(self) -> dict[str, Any]:
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": self.kernel_size, "padding": self.padding,
                "bias": self.bias is not None}  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        n, c, g, h, w = x.shape
        filters = [
            _rot(torch.roll(self.weight, shifts=r, dims=2), r) for r in range(4)
        ]  # each (O, C, 4, k, k)
        k = self.weight.shape[-2:]
        bank = torch.stack(filters, 1).reshape(self.out_channels * 4, c * 4, *k)
        y = F.conv2d(x.reshape(n, c * g, h, w), bank, padding=self.padding)
        y = y.view(n, self.out_channels, 4, *y.shape[-2:])
        if self.bias is not None:
            y = y + self.bias.view(1, -1, 1, 1, 1)
        return y


@register_layer
class P4Pool(nn.Module):
    """``(N, C, 4, H, W)`` -> ``(N, C, H, W)``: max (or mean) over the four orientations."""

    def __init__(self, mode: str = "max") -> None:
        super().__init__()
        if mode not in ("max", "mean"):
            raise ValueError(f"P4Pool mode must be max or mean, got {mode!r}")
        self.mode = mode

    def spec_args(self) -> dict[str, Any]:
        return {"mode": self.mode}

    def forward(self, x: Tensor) -> Tensor:
        return x.amax(2) if self.mode == "max" else x.mean(2)


# ------------------------------------------------------------ doubly convolution
@register_layer
class DoublyConv2d(nn.Module):
    """Doubly convolutional layer: ``meta`` filters of ``meta_size x meta_size``; every
    ``kernel_size x kernel_size`` patch of them (at ``meta_stride``) is a filter, and the
    outputs of each meta filter's patches are max-pooled in windows of ``pool x pool``
    patches. Output channels: ``meta * (patches per side / pool)^2``."""

    def __init__(
        self, in_channels: int, meta: int, kernel_size: int = 3, meta_size: int = 4,
        meta_stride: int = 1, pool: int = 1, padding: int = 1, bias: bool = True,
    ) -> None:  # fmt: skip
        super().__init__()
        side = (meta_size - kernel_size) // meta_stride + 1
        if meta_size < kernel_size or side % pool:
            raise ValueError(
                f"DoublyConv2d: {side} patches per side of a {meta_size}x{meta_size} meta "
                f"filter must be a multiple of pool={pool} (and meta_size >= kernel_size)"
            )
        self.in_channels, self.meta, self.kernel_size = in_channels, meta, kernel_size
        self.meta_size, self.meta_stride, self.pool, self.padding = (
            meta_size, meta_stride, pool, padding
        )  # fmt: skip
        self.side = side
        self.out_channels = meta * (side // pool) ** 2
        ref = nn.Conv2d(in_channels, meta, meta_size, bias=False)
        self.weight = nn.Parameter(ref.weight.detach().clone())  # (meta, C, z, z)
        self.bias = nn.Parameter(torch.zeros(self.out_channels)) if bias else None

    def spec_args(self) -> dict[str, Any]:
        return {"in_channels": self.in_channels, "meta": self.meta,
                "kernel_size": self.kernel_size, "meta_size": self.meta_size,
                "meta_stride": self.meta_stride, "pool": self.pool, "padding": self.padding,
                "bias": self.bias is not None}  # fmt: skip

    def filters(self) -> Tensor:
        """The effective filters ``(meta * side^2, C, k, k)``, patch-major per meta filter."""
        k, s = self.kernel_size, self.meta_stride
        p = self.weight.unfold(2, k, s).unfold(3, k, s)  # (meta, C, side, side, k, k)
        return p.permute(0, 2, 3, 1, 4, 5).reshape(-1, self.in_channels, k, k)

    def forward(self, x: Tensor) -> Tensor:
        y = F.conv2d(x, self.filters(), padding=self.padding)
        n, _, h, w = y.shape
        if self.pool > 1:
            y = y.view(n * self.meta, self.side, self.side, h * w).permute(0, 3, 1, 2)
            y = F.max_pool2d(y, self.pool)  # over the patch grid
            y = y.permute(0, 2, 3, 1).reshape(n, self.out_channels, h, w)
        if self.bias is not None:
            y = y + self.bias.view(1, -1, 1, 1)
        return y


# --------------------------------------------------------------------- blocks
class Fire(nn.Module):
    """SqueezeNet's Fire module: 1x1 squeeze, ReLU, then 1x1 and 3x3 expands (ReLU)
    concatenated: ``expand1x1 + expand3x3`` output channels."""

    def __init__(self, in_channels: int, squeeze: int, expand1x1: int, expand3x3: int) -> None:
        super().__init__()
        self.squeeze = nn.Sequential(nn.Conv2d(in_channels, squeeze, 1), nn.ReLU(inplace=True))
        self.expand1x1 = nn.Sequential(nn.Conv2d(squeeze, expand1x1, 1), nn.ReLU(inplace=True))
        self.expand3x3 = nn.Sequential(
            nn.Conv2d(squeeze, expand3x3, 3, padding=1), nn.ReLU(inplace=True)
        )

    def forward(self, x: Tensor) -> Tensor:
        s = self.squeeze(x)
        return torch.cat([self.expand1x1(s), self.expand3x3(s)], 1)


class SeparableConv2d(nn.Sequential):
    """Depthwise ``k x k`` (stride, padding ``k // 2``), then pointwise 1x1; each followed by
    BatchNorm and ReLU unless ``bn=False`` / ``relu=False``."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
        bn: bool = True, relu: bool = True, bias: bool | None = None,
    ) -> None:  # fmt: skip
        bias = (not bn) if bias is None else bias
        super().__init__(
            nn.Conv2d(
                in_channels,
                in_channels,
                kernel_size,
                stride,
                kernel_size // 2,
                groups=in_channels,
                bias=bias,
            ),
            *_bn_relu(in_channels, bn, relu),
            nn.Conv2d(in_channels, out_channels, 1, bias=bias),
            *_bn_relu(out_channels, bn, relu),
        )


class FlattenedConv2d(nn.Sequential):
    """Flattened convolution: 1x1 across channels, then depthwise ``k x 1`` and ``1 x k``
    (each 1-D); ``in * out + 2 k out`` weights instead of ``in * out * k^2``."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 3, bias: bool = True
    ) -> None:
        k, p = kernel_size, kernel_size // 2
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
            nn.Conv2d(out_channels, out_channels, (k, 1), padding=(p, 0),
                      groups=out_channels, bias=False),
            nn.Conv2d(out_channels, out_channels, (1, k), padding=(0, p),
                      groups=out_channels, bias=bias),
        )  # fmt: skip


@register_layer
class ChannelShuffle(nn.Module):
    """``(N, g*c, H, W)`` viewed as ``(N, g, c, ...)``, transposed to ``(N, c, g, ...)``: the
    next grouped conv's every group sees channels from every group of the last one."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def spec_args(self) -> dict[str, Any]:
        return {"groups": self.groups}

    def forward(self, x: Tensor) -> Tensor:
        n, c, *rest = x.shape
        if c % self.groups:
            raise ValueError(f"ChannelShuffle: {c} channels do not split into {self.groups} groups")
        return x.view(n, self.groups, c // self.groups, *rest).transpose(1, 2).reshape(x.shape)


class ShuffleUnit(nn.Module):
    """ShuffleNet v1 unit: grouped 1x1 (BN, ReLU), shuffle, depthwise 3x3 (BN), grouped 1x1
    (BN); added to the input at stride 1, concatenated with its 3x3 average pool at stride 2
    (then ``out_channels`` includes the input's); ReLU after."""

    def __init__(
        self, in_channels: int, out_channels: int, groups: int = 3, stride: int = 1,
        first_groups: int | None = None,
    ) -> None:  # fmt: skip
        super().__init__()
        self.stride = stride
        branch = out_channels - in_channels if stride == 2 else out_channels
        if stride == 1 and in_channels != out_channels:
            raise ValueError("ShuffleUnit: at stride 1, in_channels must equal out_channels")
        mid = max(groups, branch // 4 // groups * groups)
        g1 = groups if first_groups is None else first_groups
        for name, ch, g in (("in", in_channels, g1), ("mid", mid, groups), ("out", branch, groups)):
            if ch % g:
                raise ValueError(f"ShuffleUnit: groups={g} must divide the {name} channels {ch}")
        self.reduce = nn.Sequential(
            nn.Conv2d(in_channels, mid, 1, groups=g1, bias=False), nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
        )  # fmt: skip
        self.shuffle = ChannelShuffle(g1) if g1 > 1 else nn.Identity()
        self.depthwise = nn.Sequential(
            nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False), nn.BatchNorm2d(mid)
        )
        self.expand = nn.Sequential(
            nn.Conv2d(mid, branch, 1, groups=groups, bias=False), nn.BatchNorm2d(branch)
        )
        if stride == 1:  # the residual branch starts as zero (Goyal et al. 2017): without it,
            # sixteen units summed at lr 0.05 diverge from scratch
            nn.init.zeros_(self.expand[1].weight)

    def forward(self, x: Tensor) -> Tensor:
        y = self.expand(self.depthwise(self.shuffle(self.reduce(x))))
        if self.stride == 2:
            return F.relu(torch.cat([F.avg_pool2d(x, 3, 2, 1), y], 1))
        return F.relu(x + y)


class EffNetBlock(nn.Module):
    """EffNet block: 1x1 to ``bottleneck`` channels (BN, ReLU), depthwise 1x3 (BN, ReLU),
    2x1 max pooling (halves the height), depthwise 3x1 (BN, ReLU), and a 2x1 pointwise conv at
    stride (1, 2) to ``out_channels`` (halves the width; BN, ReLU)."""

    def __init__(self, in_channels: int, out_channels: int, bottleneck: int | None = None) -> None:
        super().__init__()
        mid = bottleneck or max(1, out_channels // 2)
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
            nn.Conv2d(mid, mid, (1, 3), padding=(0, 1), groups=mid, bias=False),
            nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
            nn.MaxPool2d((2, 1), (2, 1)),
            nn.Conv2d(mid, mid, (3, 1), padding=(1, 0), groups=mid, bias=False),
            nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
            nn.Conv2d(mid, out_channels, (1, 2), stride=(1, 2), bias=False),
            nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True),
        )  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


def shift_offsets(channels: int, kernel_size: int = 3) -> list[tuple[int, int]]:
    """The ``(dy, dx)`` of every channel: channels split as evenly as possible over the
    ``k x k`` offsets, the centre (no move) taking the remainder."""
    r = kernel_size // 2
    moves = [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1) if (dy, dx) != (0, 0)]
    per = channels // (len(moves) + 1)
    out = [m for m in moves for _ in range(per)]
    return out + [(0, 0)] * (channels - len(out))


@register_layer
class Shift(nn.Module):
    """Each channel moved by its fixed offset (:func:`shift_offsets`), zeros shifted in: no
    parameters, no multiplications."""

    def __init__(self, channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.channels, self.kernel_size = channels, kernel_size
        self.offsets = shift_offsets(channels, kernel_size)

    def spec_args(self) -> dict[str, Any]:
        return {"channels": self.channels, "kernel_size": self.kernel_size}

    def forward(self, x: Tensor) -> Tensor:
        r = self.kernel_size // 2
        h, w = x.shape[-2:]
        padded = F.pad(x, (r, r, r, r))
        out = torch.empty_like(x)
        start = 0
        # channels sharing an offset are contiguous: one slice copy per offset
        for (dy, dx), count in _runs(self.offsets):
            out[:, start : start + count] = padded[
                :, start : start + count, r - dy : r - dy + h, r - dx : r - dx + w
            ]
            start += count
        return out


def _runs(offsets: list[tuple[int, int]]) -> list[tuple[tuple[int, int], int]]:
    runs: list[tuple[tuple[int, int], int]] = []
    for o in offsets:
        if runs and runs[-1][0] == o:
            runs[-1] = (o, runs[-1][1] + 1)
        else:
            runs.append((o, 1))
    return runs


class ShiftBlock(nn.Module):
    """ShiftNet's CSC module: 1x1 conv (BN, ReLU) to ``expansion * in`` channels, shift, 1x1
    conv to ``out_channels`` at ``stride`` (BN); a residual add when shapes allow; ReLU."""

    def __init__(
        self, in_channels: int, out_channels: int, stride: int = 1, expansion: float = 1.0,
        kernel_size: int = 3,
    ) -> None:  # fmt: skip
        super().__init__()
        mid = max(1, round(in_channels * expansion))
        self.residual = stride == 1 and in_channels == out_channels
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
            Shift(mid, kernel_size),
            nn.Conv2d(mid, out_channels, 1, stride=stride, bias=False),
            nn.BatchNorm2d(out_channels),
        )  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        y = self.body(x)
        return F.relu(x + y if self.residual else y)


# ------------------------------------------------------------------ conversion targets
def _pair(v: Any) -> tuple[int, int]:
    return (int(v[0]), int(v[1])) if isinstance(v, (list, tuple)) else (int(v), int(v))


@register_layer
class DepthwiseSeparableConv2d(nn.Module):
    """A ``k x k`` convolution factored as MobileNet's pair: a depthwise ``k x k`` conv with
    ``multiplier`` filters per input channel (no bias), then a pointwise 1x1 conv (with bias),
    no nonlinearity between, so it can stand in for a trained conv.

    ``in * multiplier * (k^2 + out)`` weights instead of ``in * out * k^2``.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: Any = 3, stride: Any = 1,
        padding: Any = 0, dilation: Any = 1, multiplier: int = 1, bias: bool = True,
    ) -> None:  # fmt: skip
        super().__init__()
        if multiplier < 1:
            raise ValueError(f"multiplier must be >= 1, got {multiplier}")
        self.multiplier = multiplier
        self.depthwise = nn.Conv2d(
            in_channels, in_channels * multiplier, _pair(kernel_size), _pair(stride),
            _pair(padding), _pair(dilation), groups=in_channels, bias=False,
        )  # fmt: skip
        self.pointwise = nn.Conv2d(in_channels * multiplier, out_channels, 1, bias=bias)

    def spec_args(self) -> dict[str, Any]:
        d = self.depthwise
        return {
            "in_channels": d.in_channels, "out_channels": self.pointwise.out_channels,
            "kernel_size": list(d.kernel_size), "stride": list(d.stride),
            "padding": list(d.padding), "dilation": list(d.dilation),  # type: ignore[arg-type]
            "multiplier": self.multiplier, "bias": self.pointwise.bias is not None,
        }  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        return self.pointwise(self.depthwise(x))


@register_layer
class PairedConv2d(nn.Module):
    """A convolution computing half its output channels' filters, each output channel a scaled
    copy of one of them: ``y[:, c] = scale[c] * h[:, source[c]] + bias[c]`` with ``h`` the
    half-width conv. Two channels reading one filter with opposite-signed scales are CReLU's
    negated pair (Shang et al. 2016): with the ReLU that follows, ``relu(h)`` and ``relu(-h)``
    for the price of one filter. Halves the conv's multiplications."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: Any = 3, stride: Any = 1,
        padding: Any = 0, dilation: Any = 1,
    ) -> None:  # fmt: skip
        super().__init__()
        if out_channels % 2:
            raise ValueError(f"out_channels must be even, got {out_channels}")
        self.conv = nn.Conv2d(
            in_channels, out_channels // 2, _pair(kernel_size), _pair(stride), _pair(padding),
            _pair(dilation), bias=False,
        )  # fmt: skip
        self.register_buffer("source", torch.arange(out_channels) % (out_channels // 2))
        sign = torch.ones(out_channels)
        sign[out_channels // 2 :] = -1.0  # CReLU's layout: [h, -h]
        self.scale = nn.Parameter(sign)
        self.bias = nn.Parameter(torch.zeros(out_channels))

    source: Tensor

    def spec_args(self) -> dict[str, Any]:
        c = self.conv
        return {
            "in_channels": c.in_channels, "out_channels": self.scale.numel(),
            "kernel_size": list(c.kernel_size), "stride": list(c.stride),
            "padding": list(c.padding), "dilation": list(c.dilation),  # type: ignore[arg-type]
        }  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv(x).index_select(1, self.source)
        return torch.addcmul(self.bias.view(1, -1, 1, 1), h, self.scale.view(1, -1, 1, 1))
