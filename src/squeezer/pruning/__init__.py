"""Pruning: magnitude (Han 2015) with iterative and gradual (AGP) schedules, Optimal Brain
Damage and layer-wise Optimal Brain Surgeon (second order), and channel pruning with every
criterion of :mod:`squeezer.pruning.criteria`.

    sq.prune_(model, sq.pruning.Magnitude(sparsity=0.9))
    sq.prune_(model, sq.pruning.ChannelPruning(ratio=0.5, criterion="l1"), example_inputs)
    sq.prune_(model, sq.pruning.HeadPruning(heads=0.5, mlp=0.5), example_inputs)
    sq.prune_(model, sq.pruning.SparseVD()); sq.fit(model, train); sq.train.finish_(model)
    sq.prune_(model, sq.pruning.OBS(sparsity=0.9), data=batches)  # or OBD: second order
"""

from __future__ import annotations

from squeezer.pruning import criteria
from squeezer.pruning.channel import (
    ChannelPruning,
    ChannelReport,
    merge_neurons,
    plan_channels,
    prune_channels,
    prune_with_reconstruction,
)
from squeezer.pruning.criteria import (
    lasso_order,
    list_criteria,
    merge_order,
    rescale_,
    thinet_order,
)
from squeezer.pruning.dead_units import fold_dead_units_
from squeezer.pruning.group_lasso import GroupLasso, group_norms
from squeezer.pruning.heads import HeadPruning, HeadReport, find_attention, find_mlps
from squeezer.pruning.magnitude import Magnitude, WeightMask, set_mask, sparsity_of
from squeezer.pruning.perforation import Perforation
from squeezer.pruning.schedules import GradualPruning, agp_sparsity, iterative_prune, scaled
from squeezer.pruning.second_order import OBD, OBS, hessian_diagonal, obs_order
from squeezer.pruning.slimming import BNSparsity, bn_l1
from squeezer.pruning.sparse import SparseLinear, sparse_copy, sparsify_
from squeezer.pruning.variational import (
    SparseVD,
    VariationalDropoutWeight,
    log_alpha_of,
    vd_sparsity,
)
from squeezer.pruning.verb import prune_

__all__ = [
    "OBD",
    "OBS",
    "BNSparsity",
    "ChannelPruning",
    "ChannelReport",
    "GradualPruning",
    "GroupLasso",
    "HeadPruning",
    "HeadReport",
    "Magnitude",
    "Perforation",
    "SparseLinear",
    "SparseVD",
    "VariationalDropoutWeight",
    "WeightMask",
    "agp_sparsity",
    "bn_l1",
    "criteria",
    "find_attention",
    "find_mlps",
    "fold_dead_units_",
    "group_norms",
    "hessian_diagonal",
    "iterative_prune",
    "lasso_order",
    "list_criteria",
    "log_alpha_of",
    "merge_neurons",
    "merge_order",
    "obs_order",
    "plan_channels",
    "prune_",
    "prune_channels",
    "prune_with_reconstruction",
    "rescale_",
    "scaled",
    "set_mask",
    "sparse_copy",
    "sparsify_",
    "sparsity_of",
    "thinet_order",
    "vd_sparsity",
]
