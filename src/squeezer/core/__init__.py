"""The core below every method: module walking and replacement, layer selection, the
architecture record, module specs, and the registry of method handlers.

Nothing here knows a compression method; every family package builds on it.
"""

from __future__ import annotations

from squeezer.core.arch import (
    ARCH_ATTR,
    arch_of,
    describe,
    record,
    replace,
    replacement,
    replay,
    restore,
    zoo_name,
)
from squeezer.core.methods import (
    PerLayerReport,
    Report,
    apply,
    handler_for,
    list_methods,
    register_handler,
)
from squeezer.core.modules import (
    COMPRESSIBLE,
    bake_,
    baked_copy,
    conv_patches,
    current_weight,
    find_parametrization,
    is_type,
    matches,
    plain_state_dict,
    remove_parametrization_,
    set_module,
    type_name,
    weight_layers,
)
from squeezer.core.select import LayerSelection, override
from squeezer.core.spec import build_module, module_spec, register_layer

__all__ = [
    "ARCH_ATTR",
    "COMPRESSIBLE",
    "LayerSelection",
    "PerLayerReport",
    "Report",
    "apply",
    "arch_of",
    "bake_",
    "baked_copy",
    "build_module",
    "conv_patches",
    "current_weight",
    "describe",
    "find_parametrization",
    "handler_for",
    "is_type",
    "list_methods",
    "matches",
    "module_spec",
    "override",
    "plain_state_dict",
    "record",
    "register_handler",
    "register_layer",
    "remove_parametrization_",
    "replace",
    "replacement",
    "replay",
    "restore",
    "set_module",
    "type_name",
    "weight_layers",
    "zoo_name",
]
