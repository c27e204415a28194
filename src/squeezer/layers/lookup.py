"""Lookup-based convolution (Bagherinezhad, Rastegari & Farhadi, CVPR 2017, "LCNN:
Lookup-based Convolutional Neural Network").

Every filter of a convolution, at every spatial position, is a sparse combination of a few
vectors from a dictionary shared by the whole layer:

    W[o, :, r, s] = sum over t of C[o, t, r, s] * D[t, :],   at most ``lookups`` non-zero
                                                              C[o, :, r, s]

With a dictionary of ``k`` vectors of the input's channel depth, the layer computes
``S = D * x`` once (a 1x1 convolution to ``k`` channels) and then each output as a weighted sum
of ``lookups`` shifted channels of ``S`` per kernel position: ``k m HW + O kh kw lookups HW``
multiply-adds instead of ``O m kh kw HW``. :class:`LookupConv2d` trains the dictionary and the
non-zero coefficients (the sparsity pattern is fixed after initialization) and runs as the
1x1 convolution followed by a convolution with the sparse coefficient tensor.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from squeezer.core.spec import register_layer


@register_layer
class LookupConv2d(nn.Module):
    """A convolution whose filters are sparse combinations of a shared dictionary.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, bias: as
            ``nn.Conv2d`` (groups 1).
        dictionary_size: vectors in the dictionary (k).
        lookups: non-zero coefficients per filter position.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: tuple[int, int] | int,
        stride: tuple[int, int] | int = 1,
        padding: tuple[int, int] | int | str = 0,
        dilation: tuple[int, int] | int = 1,
        bias: bool = True,
        dictionary_size: int = 16,
        lookups: int = 1,
    ) -> None:
        super().__init__()
        pair = nn.modules.utils._pair
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride = pair(kernel_size), pair(stride)
        self.padding = padding if isinstance(padding, str) else pair(padding)
        self.dilation = pair(dilation)
        self.dictionary_size, self.lookups = int(dictionary_size), int(lookups)
        kh, kw = self.kernel_size
        self.dictionary = nn.Parameter(torch.randn(dictionary_size, in_channels) / in_channels**0.5)
        self.coefficients = nn.Parameter(torch.zeros(out_channels, dictionary_size, kh, kw))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.register_buffer(
            "mask", torch.zeros(out_channels, dictionary_size, kh, kw, dtype=torch.bool),
            persistent=False,
        )  # fmt: skip

    def spec_args(self) -> dict[str, Any]:
        return {
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "kernel_size": list(self.kernel_size),
            "stride": list(self.stride),
            "padding": self.padding if isinstance(self.padding, str) else list(self.padding),
            "dilation": list(self.dilation),
            "bias": self.bias is not None,
            "dictionary_size": self.dictionary_size,
            "lookups": self.lookups,
        }

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args)
        with torch.no_grad():  # the sparsity pattern is the coefficients' non-zeros
            self.mask.copy_(self.coefficients != 0)

    def sparse_coefficients(self) -> Tensor:
        return self.coefficients * self.mask

    @property
    def weight(self) -> Tensor:
        """The equivalent dense convolution weight."""
        return torch.einsum("otrs,tm->omrs", self.sparse_coefficients(), self.dictionary)

    def forward(self, x: Tensor) -> Tensor:
        s = F.conv2d(x, self.dictionary[:, :, None, None])  # k channels, once
        return F.conv2d(
            s, self.sparse_coefficients(), self.bias, self.stride, self.padding, self.dilation
        )

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, dictionary_size={self.dictionary_size}, "
            f"lookups={self.lookups}"
        )


def omp(x: Tensor, atoms: Tensor, n_atoms: int) -> Tensor:
    """Orthogonal matching pursuit, batched: coefficients (rows of ``x`` x atoms) with at most
    ``n_atoms`` non-zeros per row, least squares on the chosen atoms."""
    n, k = x.shape[0], atoms.shape[0]
    chosen = torch.zeros(n, 0, dtype=torch.int64)
    residual = x.clone()
    coef = torch.zeros(n, 0)
    for _ in range(min(n_atoms, k)):
        score = (residual @ atoms.t()).abs()
        if chosen.shape[1]:
            score.scatter_(1, chosen, -1.0)
        chosen = torch.cat([chosen, score.argmax(1, keepdim=True)], 1)
        basis = atoms[chosen]  # n x t x m
        coef = torch.linalg.lstsq(basis.transpose(1, 2), x.unsqueeze(2)).solution.squeeze(2)
        residual = x - torch.einsum("nt,ntm->nm", coef, basis)
    out = torch.zeros(n, k)
    out.scatter_(1, chosen, coef)
    return out


def lookup_flops(layer: LookupConv2d, height: int, width: int) -> dict[str, int]:
    """Multiply-adds of ``layer`` on an input of ``height x width``: the dictionary product,
    the lookups (non-zero coefficients only), and the dense convolution it replaces."""
    out_h = height + 2 * _pad(layer, 0) - layer.dilation[0] * (layer.kernel_size[0] - 1) - 1
    out_w = width + 2 * _pad(layer, 1) - layer.dilation[1] * (layer.kernel_size[1] - 1) - 1
    out_h, out_w = out_h // layer.stride[0] + 1, out_w // layer.stride[1] + 1
    dictionary = layer.dictionary_size * layer.in_channels * height * width
    lookups = int(layer.mask.sum()) * out_h * out_w
    dense = layer.out_channels * layer.in_channels * layer.kernel_size[0] * layer.kernel_size[1]
    return {
        "dictionary": dictionary,
        "lookups": lookups,
        "total": dictionary + lookups,
        "dense_conv": dense * out_h * out_w,
    }


def _pad(layer: LookupConv2d, i: int) -> int:
    if isinstance(layer.padding, str):
        return (
            (layer.dilation[i] * (layer.kernel_size[i] - 1)) // 2 if layer.padding == "same" else 0
        )
    return layer.padding[i]
