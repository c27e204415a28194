"""``squeezer run RECIPE MODEL``: run any recipe, with its per-stage table.

One module per command: its options (:func:`add_parser`) beside its body (:func:`run`).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from squeezer.cli.common import (
    UsageError,
    check_fits,
    create_for,
    data_options,
    dataset_splits,
    device_option,
    fit_on_device,
    info,
    json_option,
    load_model,
    model_options,
    parse_ints,
    positive,
    write_json,
)


def add_parser(sub: Any) -> None:
    from squeezer.pipeline import builtin_recipes, list_stages

    p = sub.add_parser(
        "run",
        help="run a recipe of compression stages on a model",
        description="Run the stages of a recipe (prune, channel-prune, factorize, share, "
        "fine-tune, code...) on a model, measuring size and accuracy after every stage, and "
        "write the compressed .sqz file.",
        epilog=f"Shipped recipes: {', '.join(builtin_recipes())}. Stages: "
        f"{', '.join(list_stages())}. A recipe file is YAML: name, batch_size, seed and a "
        "list 'stages' of {tag: {fields}}; unknown keys are rejected before anything runs.",
    )
    p.add_argument("recipe", metavar="RECIPE", help="a recipe YAML file or a shipped name")
    p.add_argument(
        "model",
        metavar="MODEL",
        help="a checkpoint, a .sqz file, a module:callable factory, or a zoo name (trained "
        "first for --baseline-epochs)",
    )
    recipe_options(p, "NAME-RECIPE.sqz")
    p.set_defaults(run=run)


def recipe_options(p: argparse.ArgumentParser, out_default: str) -> None:
    """The options of the commands that run a recipe (``run``, ``compress``)."""
    p.add_argument(
        "--dataset",
        metavar="NAME",
        help="data for training stages and accuracy (default: the checkpoint's, or mnist)",
    )
    p.add_argument("--out", metavar="FILE", help=f"the .sqz file (default: {out_default})")
    p.add_argument("--force", action="store_true", help="overwrite an existing --out")
    p.add_argument(
        "--baseline-epochs",
        type=positive,
        metavar="N",
        help="epochs of baseline training when MODEL is a zoo name (default 10)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="at most one epoch and one round in every stage (smoke runs)",
    )
    p.add_argument(
        "--backend",
        choices=("eager", "compile", "onnxruntime"),
        help="also time the compressed model against the original on this backend (eager "
        "PyTorch, torch.compile or ONNX Runtime), alternately in one run; not timed by default",
    )
    p.add_argument(
        "--batch-sizes",
        default="1,32",
        metavar="B[,B...]",
        help="batch sizes to time with --backend (default: 1,32)",
    )
    p.add_argument(
        "--sparse",
        action="store_true",
        help="with --backend eager or compile: time fully connected layers that are at least "
        "half zeros with CSR sparse kernels",
    )
    p.add_argument(
        "--stage-latency",
        type=positive,
        metavar="B",
        help="time the model after every stage at batch B (eager, alternately with the "
        "original) for the per-stage table; not timed by default",
    )
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    device_option(p)
    model_options(p)
    data_options(p)
    json_option(p)


def _timed(args: argparse.Namespace, original: Any, model: Any, x: Any) -> dict[str, Any]:
    """``model`` (as the file holds it: masks and codebooks baked) timed against ``original``
    on ``args.backend``; printed, and returned for the JSON."""
    import squeezer as sq
    from squeezer.core import baked_copy
    from squeezer.pruning import sparsify_

    candidate = baked_copy(model).eval()
    if args.sparse:
        replaced = sparsify_(candidate)
        info(f"sparse CSR kernels for: {', '.join(replaced) or 'no layer (none is half zeros)'}")
    m = sq.measure(
        candidate,
        x,
        baseline=original,
        batch_sizes=parse_ints(args.batch_sizes, "--batch-sizes"),
        backend=args.backend,
        per_layer_latency=False,
    )
    print(m)
    return m.to_dict()


def _quick(recipe: Any) -> Any:
    stages = []
    for s in recipe.stages:
        options = dict(s.options)
        for key in ("rounds", "epochs"):
            if key in options:
                options[key] = min(options[key], 1)
        config = s.config
        if s.tag == "fine-tune":
            config = config.replace(epochs=min(config.epochs, 1))
        stages.append(dataclasses.replace(s, config=config, options=options))
    return recipe.replace(stages=tuple(stages))


def run(args: argparse.Namespace) -> int:
    from squeezer.pipeline import load_recipe

    recipe = load_recipe(args.recipe)  # validated before any data is read
    return execute(args, lambda _model: recipe)


def execute(
    args: argparse.Namespace,
    recipe_for: Callable[[Any], Any],
    *,
    baseline_lr: float = 0.05,
    default_out: Callable[[str, str, str], str] | None = None,
) -> int:
    """Load (or train) the model, run the recipe ``recipe_for(model)`` and write the file:
    the body ``squeezer run`` and ``squeezer compress`` share.

    Args:
        args: the command's options (those of :func:`add_parser`).
        recipe_for: the recipe for the loaded model (a preset may depend on the model).
        baseline_lr: learning rate of the baseline training when MODEL is a zoo name.
        default_out: ``(stem, recipe name, dataset) -> file name`` when ``--out`` is absent.
    """
    import torch

    from squeezer.data import canonical_name
    from squeezer.models import list_models
    from squeezer.pipeline import run_recipe

    spec = args.model
    from_zoo = not Path(spec).exists() and spec in list_models()
    model, source = (None, {"meta": {}, "input_shape": []}) if from_zoo else load_model(spec, args)
    dataset = canonical_name(args.dataset or source["meta"].get("dataset") or "mnist")
    stem = spec if from_zoo else Path(spec.split(":")[-1]).stem
    recipe = recipe_for(model) if model is not None else None
    train, test = dataset_splits(dataset, args.data_dir, limit=args.limit)
    if model is None:
        model = create_for(spec, train)
        recipe = recipe_for(model)
    if args.quick:
        recipe = _quick(recipe)
    name = default_out(stem, recipe.name, dataset) if default_out else f"{stem}-{recipe.name}.sqz"
    out = Path(args.out or name)
    if out.exists() and not args.force:
        raise UsageError(f"{out} exists; pass --force to overwrite it or choose --out")
    if from_zoo:
        epochs = 1 if args.quick else args.baseline_epochs or 10
        info(f"training the baseline {spec} on {dataset} for {epochs} epoch(s)")
        fit_on_device(
            args, model, train, epochs=epochs, lr=baseline_lr, val=test, verbose=not args.quiet
        )
    check_fits(model, test.input_shape, test.num_classes, dataset)
    shape = tuple(source["input_shape"] or test.input_shape)
    info(f"recipe {recipe.name} on {stem} ({dataset}): " + ", ".join(s.tag for s in recipe.stages))
    if args.backend:
        from squeezer.core import baked_copy

        parse_ints(args.batch_sizes, "--batch-sizes")  # a typo fails before the run, not after
        original = baked_copy(model).eval()
    result = run_recipe(
        model,
        train,
        test,
        recipe,
        example_inputs=(torch.zeros(1, *shape),),
        verbose=not args.quiet,
        log=info,
        meta={"dataset": dataset, "recipe": recipe.name},
        device=args.device,
        latency_batch=args.stage_latency,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(result.sqz)
    print(result.format())
    info(f"wrote {out} ({result.size_bytes:,} bytes)")
    timed = _timed(args, original, model, torch.zeros(1, *shape)) if args.backend else None
    write_json(
        args.json,
        {**result.to_dict(), "dataset": dataset, "out": str(out), "recipe": recipe.to_dict()}
        | ({"measurement": timed} if timed is not None else {}),
    )
    return 0
