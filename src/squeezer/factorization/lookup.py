"""LCNN (Bagherinezhad 2017) as a factorization: each convolution becomes a
:class:`~squeezer.layers.LookupConv2d`, a dictionary shared by the layer times sparse
coefficients (see :mod:`squeezer.layers.lookup`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from squeezer.config import check
from squeezer.factorization.base import Conversion, Factorization, select, weight_array
from squeezer.factorization.rank import RankSpec
from squeezer.layers.lookup import LookupConv2d


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
        block = LookupConv2d.from_conv(module, k, min(s, k), self.iterations, self.seed)
        block = block.to(module.weight.dtype)
        return Conversion(block, [k], block.weight.detach())
