"""Compact filters (family C) as conversions of a trained network: its convolutions refitted
as depthwise-separable pairs or as CReLU's negated pairs (the blocks to train from scratch are
in :mod:`squeezer.layers.compact`, the architectures in the zoo).

    report = sq.convert_(model, sq.compact.DepthwiseSeparable(), data=batches)
    report = sq.convert_(model, sq.compact.CReLUPairs(layers=("features.0",)), data=batches)
"""

from __future__ import annotations

from squeezer.compact.convert import (
    CReLUPairs,
    DepthwiseSeparable,
    fit_pairs,
    fit_separable,
    patch_moments,
)

__all__ = ["CReLUPairs", "DepthwiseSeparable", "fit_pairs", "fit_separable", "patch_moments"]
