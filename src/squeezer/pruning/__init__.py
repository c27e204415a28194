"""Pruning: magnitude (Han 2015), iterative and gradual (AGP) schedules.

sq.prune_(model, sq.pruning.Magnitude(sparsity=0.9))
"""

from __future__ import annotations

from squeezer.pruning.group_lasso import GroupLasso, group_norms
from squeezer.pruning.magnitude import Magnitude, WeightMask, prune_, set_mask, sparsity_of
from squeezer.pruning.merging import merge_neurons, merge_order
from squeezer.pruning.reconstruction import (
    lasso_order,
    prune_with_reconstruction,
    reconstruct_plan,
    rescale_,
    thinet_order,
)
from squeezer.pruning.schedules import GradualPruning, agp_sparsity, iterative_prune, scaled
from squeezer.pruning.slimming import BNSparsity, bn_l1
from squeezer.pruning.sparse import SparseLinear, sparse_copy, sparsify_

__all__ = [
    "BNSparsity",
    "GradualPruning",
    "GroupLasso",
    "Magnitude",
    "SparseLinear",
    "WeightMask",
    "agp_sparsity",
    "bn_l1",
    "group_norms",
    "iterative_prune",
    "lasso_order",
    "merge_neurons",
    "merge_order",
    "prune_",
    "prune_with_reconstruction",
    "reconstruct_plan",
    "rescale_",
    "scaled",
    "set_mask",
    "sparse_copy",
    "sparsify_",
    "sparsity_of",
    "thinet_order",
]
