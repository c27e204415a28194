"""Module surgery: the mechanism of structural change, with no policy in it.

- :mod:`squeezer.surgery.graph`: the dependency graph of coupled channels of a traced model.
- :mod:`squeezer.surgery.channels`: plan (from given scores) and physically remove channel
  groups, giving a smaller model whose edits are recorded.
- :mod:`squeezer.surgery.branches`: remove residual blocks that became the identity.

Walking and replacing modules, and the architecture record, are in :mod:`squeezer.core`.
"""

from __future__ import annotations

from squeezer.core.arch import replay as apply_records
from squeezer.core.modules import (
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
from squeezer.errors import SurgeryError
from squeezer.surgery.branches import remove_identity_blocks
from squeezer.surgery.channels import (
    ChannelClass,
    ChannelPlan,
    apply_plan,
    channel_classes,
    coupled_groups,
    group_ratio,
    plan_channels,
    zero_channels_,
)
from squeezer.surgery.graph import ChannelGraph

__all__ = [
    "COMPRESSIBLE",
    "ChannelClass",
    "ChannelGraph",
    "ChannelPlan",
    "SurgeryError",
    "apply_plan",
    "apply_records",
    "bake_",
    "baked_copy",
    "channel_classes",
    "coupled_groups",
    "current_weight",
    "find_parametrization",
    "group_ratio",
    "is_linear",
    "matches",
    "plan_channels",
    "remove_identity_blocks",
    "set_module",
    "type_name",
    "weight_layers",
    "zero_channels_",
]
