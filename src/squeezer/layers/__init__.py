"""New module types that compression methods produce, each describable for save and load."""

from __future__ import annotations

from squeezer.core.spec import SpecError, build_module, module_spec, register_layer
from squeezer.layers.blocks import ChannelSelect, FactorizedConv2d, FactorizedLinear
from squeezer.layers.fastconv import FFTConv2d, WinogradConv2d
from squeezer.layers.lookup import LookupConv2d, lookup_flops, omp
from squeezer.layers.moe import MixtureOfExperts
from squeezer.layers.perforated import PerforatedConv2d, perforation_mask
from squeezer.layers.pooling import DetailPreservingPool2d, S3Pool
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
    "DetailPreservingPool2d",
    "FFTConv2d",
    "FactorizedConv2d",
    "FactorizedLinear",
    "FastfoodLinear",
    "LDRLinear",
    "LookupConv2d",
    "MixtureOfExperts",
    "PerforatedConv2d",
    "S3Pool",
    "SpecError",
    "TTLinear",
    "WinogradConv2d",
    "build_module",
    "dct",
    "fwht",
    "idct",
    "lookup_flops",
    "module_spec",
    "omp",
    "perforation_mask",
    "register_layer",
    "tt_modes",
]
