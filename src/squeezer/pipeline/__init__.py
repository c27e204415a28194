"""Recipes that chain compression stages: Deep Compression."""

from __future__ import annotations

from squeezer.pipeline.deep_compression import (
    PAPER_SPARSITY,
    DeepCompression,
    DeepCompressionResult,
    format_result,
    run_deep_compression,
)

RECIPES = {"deep-compression": DeepCompression}

__all__ = [
    "PAPER_SPARSITY",
    "RECIPES",
    "DeepCompression",
    "DeepCompressionResult",
    "format_result",
    "run_deep_compression",
]
