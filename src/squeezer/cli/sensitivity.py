"""``squeezer sensitivity``: how much accuracy each layer loses, compressed alone.

One module per command: its options (:func:`add_parser`) beside its body (:func:`run`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from squeezer.cli.common import (
    UsageError,
    check_fits,
    info,
    json_option,
    load_model,
    model_argument,
    model_options,
    positive,
    write_json,
)


def add_parser(sub: Any) -> None:
    from squeezer.automation.sensitivity import DEFAULT_VALUES, SHORTHANDS

    methods = "; ".join(
        f"'{k}': {v} (default values {','.join(f'{x:g}' for x in DEFAULT_VALUES[k])})"
        for k, v in SHORTHANDS.items()
    )
    p = sub.add_parser(
        "sensitivity",
        help="accuracy lost by compressing each layer alone, at a range of settings",
        description="For every layer the method can take, compress that layer alone at each "
        "value and measure top-1 on a validation split; prints a table (layers x values, "
        "accuracy drop in points) and can write JSON and a PNG plot. The model itself is not "
        f"changed. Methods: {methods}.",
        epilog="Example: squeezer sensitivity vgg11.pt --method channels --values 0.25,0.5,0.75 "
        "--plot vgg11-channels.png --json vgg11-channels.json",
    )
    model_argument(p)
    p.add_argument("--method", required=True, choices=tuple(SHORTHANDS), help="what to vary")
    p.add_argument(
        "--values",
        metavar="V[,V...]",
        help="the settings to try, least compression first (default: per method, see above)",
    )
    p.add_argument("--layers", metavar="PATTERNS", help="comma-separated layer name patterns")
    p.add_argument("--exclude", metavar="PATTERNS", help="comma-separated patterns to skip")
    p.add_argument("--criterion", default="l1", help="channels: the channel criterion (default l1)")
    p.add_argument(
        "--factorization",
        metavar="NAME",
        help="rank: the factorization (default: tucker for models with convolutions, else svd)",
    )
    p.add_argument(
        "--dataset", metavar="NAME", help="the validation data's dataset (default: the "
        "checkpoint's)",
    )  # fmt: skip
    p.add_argument(
        "--split",
        choices=("train", "test"),
        default="train",
        help="where the validation images come from: the last N training images (default; as "
        "AMC holds out part of the training set, so the test set stays unseen by the choice) "
        "or the first N test images",
    )
    p.add_argument(
        "--val-examples",
        type=positive,
        default=5000,
        metavar="N",
        help="validation images (default 5000)",
    )
    p.add_argument(
        "--calibration-batches",
        type=positive,
        default=4,
        metavar="N",
        help="batches of 64 training images for the methods that calibrate or fit (default 4)",
    )
    p.add_argument("--plot", metavar="PNG", help="also draw one curve per layer into PNG")
    p.add_argument("--data-dir", metavar="DIR", help="folder to look in first for the dataset")
    model_options(p)
    json_option(p)
    p.set_defaults(run=run)


def _values(text: str | None, method: str) -> list[Any]:
    from squeezer.automation.sensitivity import DEFAULT_VALUES

    if text is None:
        return list(DEFAULT_VALUES[method])
    try:
        values = [float(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise UsageError(f"--values: expected comma-separated numbers, got {text!r}") from None
    if not values:
        raise UsageError("--values: give at least one value")
    if method in ("bits", "share"):
        if any(v != int(v) or v < 1 for v in values):
            raise UsageError(f"--values: {method} takes whole numbers of bits, got {text!r}")
        return [int(v) for v in values]
    if method in ("sparsity", "channels") and any(not 0 <= v < 1 for v in values):
        raise UsageError(f"--values: {method} takes fractions in [0, 1), got {text!r}")
    if method == "rank" and any(not 0 < v <= 1 for v in values):
        raise UsageError(f"--values: rank takes fractions of the full rank in (0, 1], got {text!r}")
    return values


def _patterns(text: str | None) -> tuple[str, ...]:
    return tuple(p for p in (text or "").replace(" ", "").split(",") if p)


def run(args: argparse.Namespace) -> int:
    import torch

    import squeezer as sq
    from squeezer.automation import method_config, sensitivity
    from squeezer.cli.common import dataset_splits
    from squeezer.data import canonical_name

    values = _values(args.values, args.method)
    model, source = load_model(args.model, args)
    shape = source["input_shape"]
    if not shape:
        raise UsageError(f"{args.model}: input shape unknown; pass --input-shape C,H,W")
    dataset = canonical_name(args.dataset or source["meta"].get("dataset") or "mnist")
    train, test = dataset_splits(dataset, args.data_dir, augment=False)
    check_fits(model, test.input_shape, test.num_classes, dataset)
    if args.split == "train":
        n = min(args.val_examples, len(train))
        val = train.subset(torch.arange(len(train) - n, len(train)))
    else:
        val = test.subset(args.val_examples)
    loader = sq.data.loader(train, 64, shuffle=True, seed=0)
    data = [b for _, b in zip(range(args.calibration_batches), loader, strict=False)]
    config = method_config(args.method, model, criterion=args.criterion,
                           factorization=args.factorization)  # fmt: skip
    config = config.replace(layers=_patterns(args.layers), exclude=_patterns(args.exclude))
    if not any(True for _ in config.select(model)):
        raise UsageError(f"{type(config).__name__} selects no layer of the model (--layers "
                         f"{args.layers or '-'}, --exclude {args.exclude or '-'})")  # fmt: skip
    info(f"{args.method} sensitivity of {args.model} on {len(val)} {dataset} {args.split} images")
    model.eval()
    scan = sensitivity(model, config, values, val, example_inputs=torch.zeros(1, *shape),
                       data=data)  # fmt: skip
    print(scan.format())
    payload = {"model": args.model, "dataset": dataset, "split": args.split, **scan.to_dict()}
    if args.plot:
        try:
            path = scan.plot(args.plot, title=f"{Path(args.model).stem}: {args.method}, each "
                             "layer alone")  # fmt: skip
        except OSError as exc:
            raise UsageError(f"cannot write {args.plot}: {exc.strerror or exc}") from None
        info(f"wrote {path}")
        payload["plot"] = str(path)
    write_json(args.json, payload)
    return 0
