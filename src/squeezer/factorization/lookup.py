"""LCNN (Bagherinezhad 2017) as a factorization: each convolution becomes a
:class:`~squeezer.layers.LookupConv2d`, a dictionary shared by the layer times sparse
coefficients (see :mod:`squeezer.layers.lookup`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from squeezer.config import check
from squeezer.factorization.base import Conversion, Factorization, select, weight_array
from squeezer.factorization.rank import RankSpec
from squeezer.layers.lookup import LookupConv2d, omp
from squeezer.quantization.vector import kmeans_vectors


@dataclass(frozen=True)
class LCNN(Factorization):
    """Lookup-based convolution: ``rank`` is the dictionary size (a count, a fraction of the
    input channels, or a target such as ``"flops:0.5"``), ``lookups`` the non-zero
    coefficients per filter position. The dictionary starts from k-means of the filters'
    depth vectors and the coefficients from orthogonal matching pursuit; both train after.

    Attributes:
        lookups: non-zero coefficients per filter position (the paper: 1 to 3).
        iterations: k-means iterations for the dictionary.
        seed: seed of the k-means start.
    """

    lookups: int = 2
    iterations: int = 25
    seed: int = 0
    method: ClassVar[str] = "lcnn"

    def validate(self) -> None:
        super().validate()
        check(
            isinstance(self.lookups, int) and self.lookups >= 1,
            "LCNN: lookups must be an integer >= 1",
        )

    def _eligible(self, module: nn.Module) -> str | None:
        if module.in_channels < 2:
            return "a single input channel has no depth to share"
        return None

    def convert(self, module: nn.Module, spec: RankSpec) -> Conversion:
        assert isinstance(module, nn.Conv2d)
        w = weight_array(module)
        o, m, kh, kw = w.shape
        s = self.lookups
        (k,) = select(
            spec,
            [w.transpose(0, 2, 3, 1).reshape(-1, m)],
            [m],
            lambda r: r[0] * m + o * kh * kw * min(s, r[0]),
            o * m * kh * kw,
            lambda r: r[0] * m + o * kh * kw * min(s, r[0]),
            o * m * kh * kw,
        )
        block = lookup_from_conv(module, k, min(s, k), self.iterations, self.seed)
        block = block.to(module.weight.dtype)
        return Conversion(block, [k], block.weight.detach())


def lookup_from_conv(
    conv: nn.Conv2d, dictionary_size: int, lookups: int, iterations: int = 25, seed: int = 0
) -> LookupConv2d:
    """Approximate a trained ``conv``: the dictionary from k-means of its filters' depth
    vectors (normalized), the coefficients by orthogonal matching pursuit with
    ``lookups`` atoms per filter position."""
    w = conv.weight.detach().float()
    o, m, kh, kw = w.shape
    vectors = w.permute(0, 2, 3, 1).reshape(-1, m)  # one per filter position
    norms = vectors.norm(dim=1, keepdim=True).clamp(min=1e-12)
    k = min(dictionary_size, vectors.shape[0])
    centres, _ = kmeans_vectors(vectors / norms, k, iterations, seed)
    centres = centres / centres.norm(dim=1, keepdim=True).clamp(min=1e-12)
    if k < dictionary_size:
        pad = torch.randn(dictionary_size - k, m, generator=torch.Generator().manual_seed(seed))
        centres = torch.cat([centres, pad / pad.norm(dim=1, keepdim=True)])
    coef = omp(vectors, centres, lookups)  # positions x k
    new = LookupConv2d(
        m, o, (kh, kw), conv.stride, conv.padding, conv.dilation, conv.bias is not None,
        dictionary_size, lookups,
    )  # fmt: skip
    with torch.no_grad():
        new.dictionary.copy_(centres)
        new.coefficients.copy_(coef.reshape(o, kh, kw, -1).permute(0, 3, 1, 2))
        new.mask.copy_(new.coefficients != 0)
        if conv.bias is not None:
            new.bias.copy_(conv.bias.detach())
    return new
