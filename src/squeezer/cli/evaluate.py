"""``squeezer evaluate``: test accuracy and loss of a model.

One module per command: its options (:func:`add_parser`) beside its body (:func:`run`).
"""

from __future__ import annotations

import argparse
from typing import Any

from squeezer.cli.common import (
    UsageError,
    check_fits,
    data_options,
    dataset_splits,
    json_option,
    load_model,
    model_options,
    write_json,
)


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "evaluate",
        help="test accuracy and loss of a model",
        description="Top-1/top-5 accuracy and mean cross-entropy on a dataset's test split.",
    )
    p.add_argument(
        "checkpoint",
        metavar="MODEL",
        help="a checkpoint or .sqz file, or a module:callable factory (random weights)",
    )
    p.add_argument(
        "--dataset", metavar="NAME", help="dataset (default: the one the checkpoint was trained on)"
    )
    model_options(p)
    data_options(p)
    json_option(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import squeezer as sq
    from squeezer.data import canonical_name

    model, source = load_model(args.checkpoint, args)
    dataset = args.dataset or source["meta"].get("dataset")
    if not dataset:
        raise UsageError(f"{args.checkpoint} records no dataset; pass --dataset NAME")
    dataset = canonical_name(dataset)
    _, test = dataset_splits(dataset, args.data_dir, limit=args.limit)
    check_fits(model, test.input_shape, test.num_classes, dataset)
    metrics = sq.evaluate(model, test)
    top5 = f", top5 {metrics['top5']:.4f}" if "top5" in metrics else ""
    print(
        f"{args.checkpoint} on {dataset} test ({metrics['n']:,} images): "
        f"top1 {metrics['top1']:.4f} (error {100 * (1 - metrics['top1']):.2f}%){top5}, "
        f"loss {metrics['loss']:.4f}"
    )
    write_json(args.json, {"checkpoint": args.checkpoint, "dataset": dataset, **metrics})
    return 0
