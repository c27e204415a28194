"""Module surgery: walking layers, baking parametrizations, and removing channels.

- :mod:`squeezer.surgery.walk`: find layers by type and name; ``bake_`` parametrizations.
- :mod:`squeezer.surgery.graph`: the dependency graph of coupled channels of a traced model.
- :mod:`squeezer.surgery.channels`: physically remove channel groups, giving a smaller model.
"""

from __future__ import annotations

from squeezer.surgery.branches import remove_identity_blocks
from squeezer.surgery.channels import (
    CRITERIA,
    ChannelClass,
    ChannelPlan,
    apply_plan,
    apply_records,
    plan_channels,
    prune_channels,
    zero_channels_,
)
from squeezer.surgery.graph import ChannelGraph, SurgeryError
from squeezer.surgery.walk import (
    COMPRESSIBLE,
    bake_,
    baked_copy,
    current_weight,
    find_parametrization,
    is_linear,
    matches,
    set_module,
    type_name,
    weight_layers,
)

__all__ = [
    "COMPRESSIBLE",
    "CRITERIA",
    "ChannelClass",
    "ChannelGraph",
    "ChannelPlan",
    "SurgeryError",
    "apply_plan",
    "apply_records",
    "bake_",
    "baked_copy",
    "current_weight",
    "find_parametrization",
    "is_linear",
    "matches",
    "plan_channels",
    "prune_channels",
    "remove_identity_blocks",
    "set_module",
    "type_name",
    "weight_layers",
    "zero_channels_",
]
