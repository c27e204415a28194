"""``squeezer export``: write a model as ONNX and check it in ONNX Runtime.

One module per command: its options (:func:`add_parser`) beside its body (:func:`run`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from squeezer.cli.common import (
    UsageError,
    check_fits,
    data_options,
    dataset_splits,
    info,
    json_option,
    load_model,
    model_options,
    parse_ints,
    write_json,
)


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "export",
        help="write a model as ONNX and check it in ONNX Runtime",
        description="Export a model (pruned, factorized, shared or structured: masks and "
        "codebooks are baked in) to ONNX with a dynamic batch dimension, run the file in ONNX "
        "Runtime and compare with PyTorch: the max absolute difference on an example and, "
        "with --check, top-1 agreement and both accuracies on a dataset's test split. The "
        "output file is written only when all of that succeeds.",
    )
    p.add_argument(
        "checkpoint",
        metavar="MODEL_OR_FILE",
        help="a checkpoint or .sqz file, a module:callable factory, or a zoo name",
    )
    p.add_argument("--out", metavar="FILE", help="the ONNX file (default NAME.onnx)")
    p.add_argument(
        "--check",
        metavar="DATASET",
        help="also compare predictions on this dataset's test split (e.g. fashion-mnist)",
    )
    model_options(p)
    data_options(p)
    json_option(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch

    import squeezer as sq
    from squeezer.data import canonical_name

    model, source = load_model(args.checkpoint, args)
    shape = (
        parse_ints(args.input_shape, "--input-shape") if args.input_shape else source["input_shape"]
    )
    if not shape:
        raise UsageError(f"{args.checkpoint}: input shape unknown; pass --input-shape C,H,W")
    out = Path(args.out or f"{Path(args.checkpoint.split(':')[-1]).stem}.onnx")
    check = None
    if args.check:
        dataset = canonical_name(args.check)
        _, check = dataset_splits(dataset, args.data_dir, augment=False, limit=args.limit)
        check_fits(model, check.input_shape, check.num_classes, dataset)
        shape = list(check.input_shape)
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(0))
    if source["source"] == "zoo":
        info(f"{args.checkpoint}: zoo model with random weights")
    info(
        f"exporting to {out} through torch.onnx (several seconds for a large model), then "
        "running it in ONNX Runtime"
        + (f" on {len(check):,} {args.check} test examples" if check is not None else "")
    )
    report = sq.export(model, x, out, check=check)
    print(report)
    write_json(args.json, {"checkpoint": args.checkpoint, **report.to_dict()})
    return 0
