"""``squeezer compress``: Deep Compression of a model.

One module per command: its options (:func:`add_parser`) beside its body (:func:`run`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from squeezer.cli.common import (
    UsageError,
)
from squeezer.cli.run import recipe_options


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "compress",
        help="compress a model with a recipe (Deep Compression)",
        description="Prune with iterative retraining, share weights by k-means "
        "with centroid fine-tuning, and Huffman code into a .sqz "
        "file (Han, Mao & Dally 2016). Prints the paper's Table 1 "
        "for this model plus per-stage and per-layer breakdowns.",
    )
    p.add_argument(
        "model",
        metavar="MODEL_OR_CHECKPOINT",
        help="a checkpoint, a .sqz file, a module:callable factory, or a zoo name (a "
        "baseline is trained first)",
    )
    p.add_argument(
        "--recipe",
        default="deep-compression",
        metavar="RECIPE",
        help="deep-compression (default: the paper's per-layer sparsities for the LeNets, 90%% "
        "elsewhere; tuned with --config), or any recipe file or shipped recipe, run as "
        "'squeezer run' does",
    )
    p.add_argument(
        "--config",
        metavar="YAML",
        help="deep-compression parameters (sparsity, bits, epochs...); unknown keys are rejected",
    )
    recipe_options(p, "NAME-DATASET.sqz")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from squeezer.cli import run as run_command
    from squeezer.core import weight_layers, zoo_name
    from squeezer.pipeline import DeepCompression, load_recipe

    if args.recipe != "deep-compression":
        if args.config:
            raise UsageError("--config sets deep-compression parameters; with another --recipe, "
                             "put them in the recipe file")  # fmt: skip
        recipe = load_recipe(args.recipe)
        return run_command.execute(args, lambda _model: recipe)
    params = DeepCompression.from_yaml(Path(args.config)) if args.config else DeepCompression()
    args.baseline_epochs = args.baseline_epochs or params.baseline_epochs

    def recipe_for(model: Any) -> Any:
        names = [n for n, _ in weight_layers(model)]
        return params.to_recipe(zoo_name(model), names)

    return run_command.execute(
        args,
        recipe_for,
        baseline_lr=params.baseline_lr,
        default_out=lambda stem, _recipe, dataset: f"{stem}-{dataset}.sqz",
    )
