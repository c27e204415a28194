"""Recipes that chain compression stages, and the runner that measures every stage.

recipe = sq.pipeline.load_recipe("deep-compression")   # or a YAML file
result = sq.pipeline.run_recipe(model, train, test, recipe)
print(result)
"""

from __future__ import annotations

from squeezer.pipeline.deep_compression import (
    DeepCompression,
    DeepCompressionResult,
    paper_sparsity,
    run_deep_compression,
)
from squeezer.pipeline.recipe import (
    Code,
    FineTune,
    Recipe,
    Stage,
    builtin_recipes,
    list_stages,
    load_recipe,
    parse_stage,
    register_stage,
)
from squeezer.pipeline.run import RecipeResult, StageResult, format_result, run_recipe, run_stage

RECIPES = {"deep-compression": DeepCompression}

__all__ = [
    "RECIPES",
    "Code",
    "DeepCompression",
    "DeepCompressionResult",
    "FineTune",
    "Recipe",
    "RecipeResult",
    "Stage",
    "StageResult",
    "builtin_recipes",
    "format_result",
    "list_stages",
    "load_recipe",
    "paper_sparsity",
    "parse_stage",
    "register_stage",
    "run_deep_compression",
    "run_recipe",
    "run_stage",
]
