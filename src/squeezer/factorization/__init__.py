"""Low-rank factorization: per-layer converters and the model-wide walker ``factorize_``.

    import squeezer as sq
    report = sq.factorize_(model, sq.factorization.Tucker(rank="vbmf"))
    print(report)

Methods (configs): :class:`SVD`, :class:`Separable`, :class:`LowRankBN`, :class:`CP`,
:class:`Tucker`, :class:`TensorTrain`, :class:`Monochromatic`, :class:`Bicluster`, and the
structured-matrix replacements of Linear layers :class:`Circulant`, :class:`Fastfood`,
:class:`LDR`, :class:`ACDC`, and lookup-based convolution :class:`LCNN`. Rank specs
are described in :mod:`squeezer.factorization.rank`.
"""

from __future__ import annotations

from squeezer.factorization.base import Conversion, Factorization
from squeezer.factorization.denton import Bicluster, Monochromatic, balanced_clusters
from squeezer.factorization.lookup import LCNN, lookup_from_conv
from squeezer.factorization.methods import CP, SVD, LowRankBN, Separable, TensorTrain, Tucker
from squeezer.factorization.rank import RankSpec, energy_rank, parse_rank, vbmf_rank
from squeezer.factorization.structured import ACDC, LDR, Circulant, Fastfood
from squeezer.factorization.walker import FactorizationReport, LayerReport, factorize_

METHODS: dict[str, type[Factorization]] = {
    cls.method: cls
    for cls in (
        SVD,
        Separable,
        LowRankBN,
        CP,
        Tucker,
        TensorTrain,
        Monochromatic,
        Bicluster,
        Circulant,
        Fastfood,
        LDR,
        ACDC,
        LCNN,
    )
}

__all__ = [
    "ACDC",
    "CP",
    "LCNN",
    "LDR",
    "METHODS",
    "SVD",
    "Bicluster",
    "Circulant",
    "Conversion",
    "Factorization",
    "FactorizationReport",
    "Fastfood",
    "LayerReport",
    "LowRankBN",
    "Monochromatic",
    "RankSpec",
    "Separable",
    "TensorTrain",
    "Tucker",
    "balanced_clusters",
    "energy_rank",
    "factorize_",
    "lookup_from_conv",
    "parse_rank",
    "vbmf_rank",
]
