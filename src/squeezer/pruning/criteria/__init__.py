"""Channel criteria: objects of one protocol in one registry.

    sq.pruning.criteria.list_criteria()  # ['l1', 'l2', 'bn_scale', 'taylor', ...]

Each file registers its criteria when imported; the command line's ``--criterion`` choices,
the channel-pruning handler and the benchmarks read :func:`list_criteria`.
"""

from __future__ import annotations

from squeezer.pruning.criteria import activations, merging, norms, reconstruction
from squeezer.pruning.criteria.activations import activation_scores
from squeezer.pruning.criteria.base import (
    Criterion,
    criterion_class,
    data_criteria,
    list_criteria,
    make_criterion,
    register_criterion,
)
from squeezer.pruning.criteria.merging import merge_order
from squeezer.pruning.criteria.norms import bn_scale, filter_norm
from squeezer.pruning.criteria.reconstruction import lasso_order, rescale_, thinet_order

__all__ = [
    "Criterion",
    "activation_scores",
    "activations",
    "bn_scale",
    "criterion_class",
    "data_criteria",
    "filter_norm",
    "lasso_order",
    "list_criteria",
    "make_criterion",
    "merge_order",
    "merging",
    "norms",
    "reconstruction",
    "register_criterion",
    "rescale_",
    "thinet_order",
]
