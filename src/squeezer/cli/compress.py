"""``squeezer compress``: Deep Compression of a model.

One module per command: its options (:func:`add_parser`) beside its body (:func:`run`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from squeezer.cli.common import (
    UsageError,
    check_fits,
    create_for,
    data_options,
    dataset_splits,
    info,
    json_option,
    load_model,
    model_options,
    write_json,
)


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
    p.add_argument(
        "--dataset",
        metavar="NAME",
        help="data for fine-tuning and accuracy (default: the checkpoint's, or mnist)",
    )
    p.add_argument("--out", metavar="FILE", help="the .sqz file (default: NAME-DATASET.sqz)")
    p.add_argument("--force", action="store_true", help="overwrite an existing --out")
    p.add_argument(
        "--quick",
        action="store_true",
        help="one epoch per stage and one pruning round (smoke runs)",
    )
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    model_options(p)
    data_options(p)
    json_option(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.recipe != "deep-compression":
        if args.config:
            raise UsageError("--config sets deep-compression parameters; with another --recipe, "
                             "put them in the recipe file")  # fmt: skip
        from squeezer.cli import run as run_command

        args.baseline_epochs = 10
        return run_command.run(args)
    import squeezer as sq
    from squeezer.data import canonical_name
    from squeezer.models import list_models
    from squeezer.pipeline import RECIPES, format_result, run_deep_compression

    recipe_cls = RECIPES["deep-compression"]
    recipe = recipe_cls.from_yaml(Path(args.config)) if args.config else recipe_cls()
    if args.quick:
        recipe = recipe.replace(prune_rounds=1, prune_epochs=1, share_epochs=1, baseline_epochs=1)
    spec = args.model
    from_zoo = not Path(spec).exists() and spec in list_models()
    if from_zoo:
        model, source = None, {"meta": {}}
    else:
        model, source = load_model(spec, args)
    dataset = canonical_name(args.dataset or source["meta"].get("dataset") or "mnist")
    name = Path(spec).stem if not from_zoo else spec
    out = Path(args.out or f"{name}-{dataset}.sqz")
    if out.exists() and not args.force:
        raise UsageError(f"{out} exists; pass --force to overwrite it or choose --out")
    train, test = dataset_splits(dataset, args.data_dir, limit=args.limit)
    if model is None:
        model = create_for(spec, train)
        info(f"training the baseline {spec} on {dataset} for {recipe.baseline_epochs} epoch(s)")
        sq.fit(
            model,
            train,
            recipe.train(recipe.baseline_epochs, recipe.baseline_lr),
            val=test,
            verbose=not args.quiet,
        )
    check_fits(model, test.input_shape, test.num_classes, dataset)
    info(
        f"deep compression of {name} on {dataset}: prune ({recipe.prune_rounds} rounds x "
        f"{recipe.prune_epochs} epochs), share weights ({recipe.share_epochs} epochs), "
        f"Huffman code"
    )
    result = run_deep_compression(
        model,
        train,
        test,
        recipe,
        verbose=not args.quiet,
        log=info,
        meta={"dataset": dataset, "recipe": args.recipe},
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(result.sqz)
    print(format_result(result))
    info(f"wrote {out} ({result.size_bytes:,} bytes)")
    write_json(
        args.json,
        {
            **result.to_dict(),
            "dataset": dataset,
            "out": str(out),
            "recipe": {"name": args.recipe, **recipe.to_dict()},
        },
    )
    return 0
