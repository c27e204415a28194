"""``squeezer measure``: size, FLOPs and latency, optionally against a baseline.

One module per command: its options (:func:`add_parser`) beside its body (:func:`run`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from squeezer.cli.common import (
    UsageError,
    info,
    json_option,
    layout_option,
    load_model,
    model_options,
    parse_ints,
    positive,
    positive_float,
    write_json,
)


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "measure",
        help="size, FLOPs and latency, optionally against a baseline",
        description="Per layer and in total: parameters, non-zero parameters, "
        "FLOPs, bytes as stored and measured latency (median and "
        "IQR). With --baseline, also the compression rate, index "
        "space saving, FLOPs reduction and measured speedup, both "
        "models timed alternately in the same run.",
    )
    p.add_argument(
        "checkpoint",
        metavar="CHECKPOINT",
        help="a checkpoint or .sqz file, a module:callable factory, or a zoo model name "
        "(random weights)",
    )
    p.add_argument(
        "--sparse",
        action="store_true",
        help="run fc layers that are at least half zeros with CSR sparse kernels",
    )
    p.add_argument("--baseline", metavar="CHECKPOINT", help="the model to compare against")
    p.add_argument(
        "--batch-sizes",
        default="1,256",
        metavar="B[,B...]",
        help="batch sizes to time (default: 1,256)",
    )
    p.add_argument(
        "--threads",
        metavar="T[,T...]",
        help="thread counts to time (default: PyTorch's current setting)",
    )
    model_options(p)
    p.add_argument(
        "--min-run-time",
        type=positive_float,
        default=0.5,
        metavar="SECONDS",
        help="seconds of timing per model and setting, at least (default: 0.5)",
    )
    p.add_argument("--no-latency", action="store_true", help="count only, do not time")
    p.add_argument(
        "--dataset",
        metavar="NAME",
        help="also measure over this dataset's test images: expected FLOPs per example (a "
        "dynamic network's, such as early exits, depend on the input), top-1, and the time of "
        "whole passes over them (with --baseline, alternating)",
    )
    p.add_argument(
        "--examples",
        type=positive,
        default=2000,
        metavar="N",
        help="test images measured with --dataset (default: 2000)",
    )
    p.add_argument(
        "--data-batch-size",
        type=positive,
        default=100,
        metavar="B",
        help="batch size of the passes over the data (default: 100)",
    )
    p.add_argument(
        "--rounds",
        type=positive,
        default=5,
        metavar="N",
        help="timed passes over the data per model; the median is reported (default: 5)",
    )
    p.add_argument("--data-dir", metavar="DIR", help="folder to look in first for the dataset")
    layout_option(p)
    json_option(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch

    import squeezer as sq

    model, source = load_model(args.checkpoint, args)
    if args.sparse:
        from squeezer.pruning import sparsify_

        replaced = sparsify_(model)
        info(f"sparse CSR kernels for: {', '.join(replaced) or 'no layer (none is half zeros)'}")
    shape = (
        parse_ints(args.input_shape, "--input-shape") if args.input_shape else source["input_shape"]
    )
    if not shape:
        raise UsageError(f"{args.checkpoint}: input shape unknown; pass --input-shape C,H,W")
    baseline = None
    if args.baseline:
        baseline, _ = load_model(args.baseline, args)
    batch_sizes = parse_ints(args.batch_sizes, "--batch-sizes")
    threads = parse_ints(args.threads, "--threads") if args.threads else None
    x = torch.randn(1, *shape)
    try:
        m = sq.measure(
            model,
            x,
            baseline=baseline,
            batch_sizes=batch_sizes,
            threads=threads,
            latency=not args.no_latency,
            min_run_time=args.min_run_time,
            layout=args.layout,
            backend=args.backend,
        )
    except sq.SqueezerError:
        raise
    except RuntimeError as exc:  # shape mismatch between the model and --input-shape
        first = str(exc).splitlines()[0]
        raise UsageError(
            f"the model does not run on inputs of shape {tuple(shape)}: {first}"
        ) from None
    if source["source"] == "zoo":
        info(f"{args.checkpoint}: zoo model with random weights")
    print(m)
    payload = m.to_dict()
    if args.dataset:
        from squeezer.cli.common import check_fits, dataset_splits
        from squeezer.data import canonical_name

        dataset = canonical_name(args.dataset)
        _, test = dataset_splits(dataset, args.data_dir, limit=args.examples)
        check_fits(model, test.input_shape, test.num_classes, dataset)
        over = sq.analysis.measure_data(
            model,
            test,
            baseline=baseline,
            batch_size=args.data_batch_size,
            rounds=args.rounds,
            threads=threads[0] if threads else None,
        )
        print(f"{dataset} test images, {over.format()}")
        payload["over_data"] = {"dataset": dataset, **over.to_dict()}
    files = [Path(p) for p in (args.checkpoint, args.baseline) if p and Path(p).is_file()]
    if Path(args.checkpoint).is_file():
        payload["file_bytes"] = Path(args.checkpoint).stat().st_size
    if len(files) == 2:
        payload["baseline_file_bytes"] = files[1].stat().st_size
        payload["file_compression_rate"] = files[1].stat().st_size / files[0].stat().st_size
        print(
            f"  files: {files[1].stat().st_size:,} -> {files[0].stat().st_size:,} bytes "
            f"({payload['file_compression_rate']:.2f}x)"
        )
    write_json(args.json, payload)
    return 0
