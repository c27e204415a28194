"""Pooling layers of the surveys' dynamic and efficient networks.

- :class:`S3Pool` (Zhai et al. 2017): pooling as two steps, a ``k x k`` max over every
  position (stride 1), then downsampling. While training the downsampling is stochastic: the
  map is cut into ``grid x grid`` tiles and in each tile ``grid / stride`` rows and as many
  columns are drawn at random (kept in order), one draw per mini-batch, a regularizer that
  distorts the feature maps. At inference the downsampling is its deterministic counterpart,
  an average over each ``stride x stride`` window (every row and column being equally
  likely to be drawn).
- :class:`DetailPreservingPool2d` (Saeedan et al. 2018): an average over each window weighted
  towards the inputs that differ from a linearly downscaled version of the window,
  ``w = alpha + rho_lambda(x - x~)`` with ``rho(d) = sqrt(d^2 + eps^2)^lambda`` (symmetric)
  or ``sqrt(max(d, 0)^2 + eps^2)^lambda`` (asymmetric: only details brighter than their
  surroundings); ``alpha``, ``lambda`` (per channel, kept >= 0) and the downscaling filter
  are learned. ``lambda = 0`` is average pooling; a large ``lambda`` approaches picking the
  most different input.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from squeezer.core.spec import register_layer


@register_layer
class S3Pool(nn.Module):
    """Stochastic spatial sampling pooling (see the module).

    Args:
        kernel_size: the max-pooling window (stride 1; the map is padded on its bottom and
            right by repeating the edge, so its size is kept).
        stride: the downsampling factor.
        grid: the tile size of the stochastic sampling, a multiple of ``stride`` (``stride``:
            one row of every ``stride``; larger: more distortion). The map's height and width
            must be multiples of it while training.
    """

    def __init__(self, kernel_size: int = 2, stride: int = 2, grid: int | None = None) -> None:
        super().__init__()
        grid = stride if grid is None else grid
        if kernel_size < 1 or stride < 1:
            raise ValueError("S3Pool: kernel_size and stride must be >= 1")
        if grid % stride:
            raise ValueError(f"S3Pool: grid={grid} must be a multiple of stride={stride}")
        self.kernel_size, self.stride, self.grid = kernel_size, stride, grid
        self.last_rows: Tensor | None = None  # the rows and columns of the last training draw
        self.last_cols: Tensor | None = None

    def spec_args(self) -> dict[str, Any]:
        return {"kernel_size": self.kernel_size, "stride": self.stride, "grid": self.grid}

    def dense(self, x: Tensor) -> Tensor:
        """The first step: the stride-1 max pooling, same size as ``x``."""
        k = self.kernel_size
        if k == 1:
            return x
        return F.max_pool2d(F.pad(x, (0, k - 1, 0, k - 1), mode="replicate"), k, 1)

    def _draw(self, size: int, device: torch.device) -> Tensor:
        if size % self.grid:
            raise ValueError(
                f"S3Pool: a map of {size} rows or columns does not split into tiles of "
                f"grid={self.grid} (give a grid that divides the feature map's size)"
            )
        tiles, keep = size // self.grid, self.grid // self.stride
        picks = torch.rand(tiles, self.grid, device=device).argsort(1)[:, :keep].sort(1).values
        offsets = torch.arange(tiles, device=device)[:, None] * self.grid
        return (picks + offsets).flatten()

    def forward(self, x: Tensor) -> Tensor:
        y = self.dense(x)
        if not self.training:
            return F.avg_pool2d(y, self.stride, self.stride, ceil_mode=True)
        rows = self._draw(y.shape[-2], y.device)
        cols = self._draw(y.shape[-1], y.device)
        self.last_rows, self.last_cols = rows, cols
        return y.index_select(-2, rows).index_select(-1, cols)


@register_layer
class DetailPreservingPool2d(nn.Module):
    """Detail-preserving pooling (see the module).

    Args:
        channels: input channels (``alpha`` and ``lambda`` are per channel).
        kernel_size: the pooling window.
        stride: the step (default: the window).
        symmetric: reward details darker and brighter than their surroundings alike (default:
            only brighter ones, the paper's asymmetric variant).
        alpha, lam: initial values (the paper's are learned from about these).
        eps: the reward's smoothing constant.
    """

    def __init__(
        self, channels: int, kernel_size: int = 2, stride: int | None = None,
        symmetric: bool = False, alpha: float = 1.0, lam: float = 1.0, eps: float = 1e-3,
    ) -> None:  # fmt: skip
        super().__init__()
        self.channels, self.kernel_size = channels, kernel_size
        self.stride = kernel_size if stride is None else stride
        self.symmetric, self.eps = symmetric, eps
        self.alpha = nn.Parameter(torch.full((channels,), float(alpha)))
        self.lam = nn.Parameter(torch.full((channels,), float(lam)))
        self.filter = nn.Parameter(torch.zeros(kernel_size * kernel_size))  # softmax: a box

    def spec_args(self) -> dict[str, Any]:
        return {
            "channels": self.channels, "kernel_size": self.kernel_size, "stride": self.stride,
            "symmetric": self.symmetric, "eps": self.eps,
        }  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        k, s = self.kernel_size, self.stride
        oh, ow = (h - k) // s + 1, (w - k) // s + 1
        patches = F.unfold(x, k, stride=s).view(n, c, k * k, oh * ow)
        smooth = torch.einsum("nckl,k->ncl", patches, self.filter.softmax(0))
        diff = patches - smooth[:, :, None]
        if not self.symmetric:
            diff = diff.clamp_min(0)
        lam = self.lam.clamp_min(0).view(1, c, 1, 1)
        # in logs, scaled to each window's largest weight: a large lambda would otherwise
        # underflow every weight of a window to zero
        log_reward = 0.5 * lam * (diff.square() + self.eps**2).log()
        alpha = self.alpha.clamp_min(0).view(1, c, 1, 1)
        log_alpha = alpha.clamp_min(1e-30).log()
        with torch.no_grad():  # a common scale of a window's weights: the output ignores it
            top = torch.maximum(log_reward.amax(2, keepdim=True), log_alpha)
        floor = torch.where(alpha > 0, (log_alpha - top).exp(), torch.zeros_like(top))
        weight = floor + (log_reward - top).exp()
        out = (weight * patches).sum(2) / weight.sum(2)
        return out.view(n, c, oh, ow)
