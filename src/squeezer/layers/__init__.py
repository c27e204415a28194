"""New module types that compression methods produce, each describable for save and load."""

from __future__ import annotations

from squeezer.core.spec import SpecError, build_module, module_spec, register_layer
from squeezer.layers.blocks import ChannelSelect, FactorizedConv2d, FactorizedLinear
from squeezer.layers.structured import (
    ACDCLinear,
    CirculantLinear,
    FastfoodLinear,
    LDRLinear,
    dct,
    fwht,
    idct,
)
from squeezer.layers.tt import TTLinear, tt_modes

__all__ = [
    "ACDCLinear",
    "ChannelSelect",
    "CirculantLinear",
    "FactorizedConv2d",
    "FactorizedLinear",
    "FastfoodLinear",
    "LDRLinear",
    "SpecError",
    "TTLinear",
    "build_module",
    "dct",
    "fwht",
    "idct",
    "module_spec",
    "register_layer",
    "tt_modes",
]
