"""Perforated convolution (Figurnov, Ibraimova, Vetrov & Kohli 2016, "PerforatedCNNs").

The convolution is evaluated only at a subset of its output positions (the *perforation
mask*); every other position takes the value of the nearest evaluated one. The evaluated
positions' input patches are gathered straight from the padded input (no full ``im2col``),
multiplied by the filters in one matrix product, and scattered back by a nearest-neighbour
index, so the work is proportional to the positions kept.

Masks, for an output of ``H x W`` positions and a reduction ``rate`` (positions / kept):

- ``"grid"``: the paper's grid mask: a set of rows and a set of columns, each an evenly spread
  integer sequence ``floor((n / k) * (i + b))``, ``i < k``, with a seeded offset ``b`` in
  [0, 1) (about ``sqrt(1 / rate)`` of each axis kept); every position at a kept row and a kept
  column is evaluated;
- ``"strided"``: a regular grid, every ``a``-th row and ``b``-th column with ``a b = rate``
  (:func:`strides_for`) from a seeded start: the grid mask with even spacing, which runs as one
  strided convolution of the backend (oneDNN here) on the shifted input instead of gathered
  patches, so the saving in FLOPs becomes a saving in time;
- ``"uniform"``: ``H W / rate`` positions chosen uniformly at random (seeded).

The mask depends only on the output size, the rate, the kind and the seed, so it is rebuilt
(and cached) for each input size the layer meets, and a saved model rebuilds it exactly.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from squeezer.core.spec import register_layer
from squeezer.layers.fastconv import ConvLike, _pair

MASKS = ("grid", "strided", "uniform")


def strides_for(rate: float) -> tuple[int, int]:
    """The ``(row, column)`` steps of a ``"strided"`` mask: integers whose product is
    ``rate``, as even as possible (2 -> 1 x 2, 4 -> 2 x 2, 6 -> 2 x 3)."""
    r = round(rate)
    if abs(rate - r) > 1e-9 or r < 1:
        raise ValueError(f"a strided perforation mask needs a whole-number rate, got {rate}")
    rows = max(d for d in range(1, math.isqrt(r) + 1) if r % d == 0)
    return rows, r // rows


def _axis(n: int, keep: int, offset: float) -> list[int]:
    """``keep`` of ``0..n-1`` spread evenly, the grid starting at a fractional ``offset``."""
    keep = max(1, min(n, keep))
    step = n / keep
    return sorted({min(n - 1, math.floor(step * (i + offset))) for i in range(keep)})


def perforation_mask(height: int, width: int, rate: float, kind: str, seed: int = 0) -> Tensor:
    """A boolean ``(height, width)`` mask of the evaluated positions (see the module)."""
    if kind not in MASKS:
        raise ValueError(f"perforation mask must be one of {', '.join(MASKS)}, got {kind!r}")
    if rate < 1:
        raise ValueError(f"perforation rate must be >= 1, got {rate}")
    total = height * width
    target = max(1, round(total / rate))
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(height, width, dtype=torch.bool)
    if kind == "uniform":
        mask.view(-1)[torch.randperm(total, generator=g)[:target]] = True
        return mask
    if kind == "strided":
        a, b = strides_for(rate)
        start = torch.randint(0, a * b, (1,), generator=g).item()
        mask[start // b % a :: a, start % b :: b] = True
        return mask
    # grid: the same keep fraction per axis, sqrt of the total
    per_axis = math.sqrt(target / total)
    offset = float(torch.rand(1, generator=g))
    rows = _axis(height, round(height * per_axis), offset)
    cols = _axis(width, max(1, round(target / len(rows))), offset)
    mask[torch.tensor(rows)[:, None], torch.tensor(cols)[None, :]] = True
    return mask


def nearest_index(mask: Tensor) -> Tensor:
    """For every position of ``mask``, the index (among the kept positions, in row-major
    order) of the nearest kept one (Euclidean; ties to the lower index)."""
    h, w = mask.shape
    kept = mask.flatten().nonzero().flatten()
    ky, kx = kept // w, kept % w
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    d = (yy.flatten()[:, None] - ky[None, :]) ** 2 + (xx.flatten()[:, None] - kx[None, :]) ** 2
    return d.argmin(1)


@register_layer
class PerforatedConv2d(ConvLike):
    """A convolution evaluated at ``1 / rate`` of its output positions (see the module).

    Holds ``weight`` and ``bias`` as ``nn.Conv2d`` does; :meth:`from_conv` converts one.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Any,
        stride: Any = 1,
        padding: Any = 0,
        dilation: Any = 1,
        groups: int = 1,
        bias: bool = True,
        rate: float = 2.0,
        mask: str = "grid",
        seed: int = 0,
    ) -> None:
        if mask not in MASKS:
            raise ValueError(f"perforation mask must be one of {', '.join(MASKS)}, got {mask!r}")
        if not rate >= 1:
            raise ValueError(f"perforation rate must be >= 1, got {rate}")
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, groups, bias)
        self.dilation = _pair(dilation)
        self.rate, self.mask, self.seed = float(rate), mask, seed
        self._plans: dict[tuple[int, int, str], tuple[Tensor, Tensor, int]] = {}

    def spec_args(self) -> dict[str, Any]:
        return {**super().spec_args(), "dilation": list(self.dilation), "rate": self.rate,
                "mask": self.mask, "seed": self.seed}  # fmt: skip

    @classmethod
    def from_conv(  # type: ignore[override]
        cls, conv: nn.Conv2d, rate: float = 2.0, mask: str = "grid", seed: int = 0
    ) -> PerforatedConv2d:
        """``conv`` evaluated at ``1 / rate`` of its positions (weights copied)."""
        cls.check_padding(conv)
        return cls(
            conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
            conv.dilation, conv.groups, conv.bias is not None, rate, mask, seed,
        ).copy_weights_(conv)  # fmt: skip

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, rate={self.rate}, mask={self.mask}"
        )

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        size = []
        for i, n in enumerate((height, width)):
            span = self.dilation[i] * (self.kernel_size[i] - 1) + 1
            size.append((n + 2 * self.padding[i] - span) // self.stride[i] + 1)
        return size[0], size[1]

    def positions(self, height: int, width: int) -> Tensor:
        """The evaluated-position mask for an input of ``height x width``."""
        return perforation_mask(*self.output_size(height, width), self.rate, self.mask, self.seed)

    def _plan(self, h: int, w: int, device: torch.device) -> tuple[Tensor, Tensor, int]:
        """(input offsets of every kept position's patch, nearest-kept index, kept count)."""
        key = (h, w, str(device))
        if key not in self._plans:
            ho, wo = self.output_size(h, w)
            mask = perforation_mask(ho, wo, self.rate, self.mask, self.seed)
            kept = mask.flatten().nonzero().flatten()
            oy, ox = kept // wo, kept % wo
            wp = w + 2 * self.padding[1]
            (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.stride, self.dilation
            ky = torch.arange(kh).repeat_interleave(kw) * dh  # kernel offsets, row-major
            kx = torch.arange(kw).repeat(kh) * dw
            rows = oy[None, :] * sh + ky[:, None]  # (k*k, kept)
            cols = ox[None, :] * sw + kx[:, None]
            self._plans[key] = (
                (rows * wp + cols).to(device),
                nearest_index(mask).to(device),
                len(kept),
            )
        return self._plans[key]

    def _grid_plan(self, h: int, w: int, device: torch.device) -> tuple[Any, ...]:
        """A strided mask's (first kept row, column, their counts, nearest kept row of every
        row, nearest kept column of every column): Euclidean nearest on a product grid is
        the nearest row with the nearest column."""
        key = (h, w, str(device), "grid")
        if key not in self._plans:
            mask = self.positions(h, w)
            rows = mask.any(1).nonzero().flatten()
            cols = mask.any(0).nonzero().flatten()
            near_r = (torch.arange(mask.shape[0])[:, None] - rows[None, :]).abs().argmin(1)
            near_c = (torch.arange(mask.shape[1])[:, None] - cols[None, :]).abs().argmin(1)
            self._plans[key] = (int(rows[0]), int(cols[0]), len(rows), len(cols),
                                near_r.to(device), near_c.to(device))  # fmt: skip
        return self._plans[key]  # type: ignore[return-value]

    def forward(self, x: Tensor) -> Tensor:
        xp = F.pad(x, (self.padding[1], self.padding[1], self.padding[0], self.padding[0]))
        if self.mask == "strided":  # one strided convolution of the backend, then the fill
            r0, c0, nr, nc, near_r, near_c = self._grid_plan(x.shape[2], x.shape[3], x.device)
            a, b = strides_for(self.rate)
            (sh, sw), (dh, dw) = self.stride, self.dilation
            shifted = xp[:, :, r0 * sh :, c0 * sw :]
            y = F.conv2d(shifted, self.weight, self.bias, (a * sh, b * sw), 0, (dh, dw),
                         self.groups)  # fmt: skip
            return y[:, :, :nr, :nc].index_select(2, near_r).index_select(3, near_c)
        n, _, h, w = x.shape
        ho, wo = self.output_size(h, w)
        offsets, nearest, kept = self._plan(h, w, x.device)
        patches = xp.flatten(2)[:, :, offsets]  # (n, C, k*k, kept)
        g = self.groups
        patches = patches.reshape(n, g, -1, kept)  # (n, g, C/g * k*k, kept)
        weight = self.weight.reshape(g, self.out_channels // g, -1)  # (g, O/g, C/g * k*k)
        y = torch.matmul(weight, patches).reshape(n, self.out_channels, kept)
        if self.bias is not None:
            y = y + self.bias.view(1, -1, 1)
        return y[:, :, nearest].reshape(n, self.out_channels, ho, wo)
