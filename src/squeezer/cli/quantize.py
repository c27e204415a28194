"""``squeezer quantize``: int8 post-training quantization on a real integer backend.

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
    model_argument,
    model_options,
    parse_ints,
    positive,
    positive_float,
    write_json,
)

METHODS = ("int8",)


def add_parser(sub: Any) -> None:
    from squeezer.quantization import OBSERVERS

    p = sub.add_parser(
        "quantize",
        help="int8 quantization on integer kernels (torch.compile or ONNX Runtime)",
        description="Quantize a trained model to int8 (weights per channel, activations per "
        "tensor, ranges calibrated on --dataset), then report accuracy, size and latency of "
        "the int8 model against float32 on the same backend and against eager float32. "
        "Example: squeezer quantize resnet20.pt --backend onnxruntime --observer entropy "
        "--out r20-int8.onnx",
    )
    model_argument(p)
    p.add_argument(
        "--method",
        choices=METHODS,
        default="int8",
        help="int8: post-training quantization with calibration (default)",
    )
    p.add_argument("--bits", type=int, default=8, help="weight and activation bits (int8: 8)")
    p.add_argument(
        "--backend",
        choices=("inductor", "onnxruntime"),
        default="inductor",
        help="what runs the int8 model: torch.compile with oneDNN int8 kernels (inductor, "
        "default) or ONNX Runtime's integer kernels (onnxruntime)",
    )
    p.add_argument(
        "--observer",
        choices=OBSERVERS,
        default="mse",
        help="how activation ranges are chosen: minmax, percentile (--percentile), mse "
        "(least squared error, default) or entropy (KL divergence, as TensorRT)",
    )
    p.add_argument(
        "--percentile", type=positive_float, default=99.99, help="for --observer percentile"
    )
    p.add_argument(
        "--calibration",
        type=positive,
        default=32,
        metavar="N",
        help="calibration batches of 64 training images (default 32)",
    )
    p.add_argument(
        "--dynamic",
        action="store_true",
        help="quantize Linear layers only, activations at run time (no calibration data)",
    )
    p.add_argument("--per-tensor", action="store_true", help="one weight scale per tensor")
    p.add_argument("--exclude", metavar="PATTERNS", help="comma-separated layers left float32")
    p.add_argument(
        "--dataset", metavar="NAME", help="calibration and test data (default: the checkpoint's)"
    )
    p.add_argument("--batch-sizes", default="1,32", metavar="B[,B...]", help="batch sizes to time")
    p.add_argument(
        "--min-run-time", type=positive_float, default=0.5, metavar="SECONDS",
        help="seconds of timing per model and setting (default 0.5)",
    )  # fmt: skip
    p.add_argument("--no-latency", action="store_true", help="skip the timing")
    p.add_argument(
        "--out",
        metavar="FILE",
        help="the int8 model: .onnx for onnxruntime, .pt2 for inductor (default "
        "NAME-int8.onnx or NAME-int8.pt2)",
    )
    model_options(p)
    data_options(p)
    json_option(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import copy

    import torch

    import squeezer as sq
    from squeezer.analysis import time_models
    from squeezer.data import canonical_name
    from squeezer.deploy import prepare
    from squeezer.errors import ConfigError

    if args.method == "int8" and args.bits != 8:
        raise UsageError(f"--bits {args.bits}: int8 quantization is 8 bits")
    suffix = ".onnx" if args.backend == "onnxruntime" else ".pt2"
    if args.out and Path(args.out).suffix != suffix:
        raise UsageError(f"--out: the {args.backend} int8 model is written as {suffix}")
    model, source = load_model(args.model, args)
    shape = source["input_shape"]
    if not shape:
        raise UsageError(f"{args.model}: input shape unknown; pass --input-shape C,H,W")
    try:
        config = sq.quantization.Int8(
            backend=args.backend, observer=args.observer, percentile=args.percentile,
            per_channel=not args.per_tensor, dynamic=args.dynamic, max_batches=args.calibration,
            exclude=tuple(s for s in (args.exclude or "").split(",") if s),
        )  # fmt: skip
    except ConfigError as err:
        raise UsageError(str(err)) from None
    dataset = source["meta"].get("dataset") or args.dataset
    if args.dataset:
        dataset = args.dataset
    train = test = None
    if dataset:
        dataset = canonical_name(dataset)
        train, test = dataset_splits(dataset, args.data_dir, augment=False, limit=args.limit)
        check_fits(model, test.input_shape, test.num_classes, dataset)
    elif not args.dynamic:
        raise UsageError("calibration needs data: pass --dataset NAME (or --dynamic)")
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(0))
    if source["source"] == "zoo":
        info(f"{args.model}: zoo model with random weights")
    info(
        f"quantizing to int8 for {args.backend}"
        + ("" if args.dynamic else f", calibrating on {args.calibration} batches of {dataset}")
    )
    q = sq.quantize(model, config, x, calibration=train)
    print(q.report)
    result: dict[str, Any] = {"model": args.model, **q.report.to_dict()}
    if test is not None:
        result["dataset"] = dataset
        result["top1_float"] = sq.evaluate(model, test)["top1"]
        result["top1_int8"] = sq.evaluate(q, test)["top1"]
        info(
            f"top-1 on {dataset}: float32 {result['top1_float']:.4f}, int8 "
            f"{result['top1_int8']:.4f} ({100 * (result['top1_int8'] - result['top1_float']):+.2f}"
            " points)"
        )
    if not args.no_latency:
        same = "compile" if args.backend == "inductor" else "onnxruntime"
        one = x[:1]
        info(f"timing int8 against float32 on {same} and eager float32")
        eager = copy.deepcopy(model).eval()
        on_backend = prepare(copy.deepcopy(model).eval(), same, one, torch.get_num_threads())
        rows = []
        for b in parse_ints(args.batch_sizes, "--batch-sizes"):
            lat = time_models(
                [eager, on_backend.module, q], one, b, torch.get_num_threads(),
                min_run_time=args.min_run_time,
            )  # fmt: skip
            rows.append({
                "batch_size": b, "threads": torch.get_num_threads(),
                "eager_float32_ms": lat[0].median_ms, f"{same}_float32_ms": lat[1].median_ms,
                "int8_ms": lat[2].median_ms,
                "speedup_over_eager": lat[0].median_ms / lat[2].median_ms,
                "speedup_over_same_backend": lat[1].median_ms / lat[2].median_ms,
            })  # fmt: skip
        print(
            f"latency (ms, median, {torch.get_num_threads()} thread(s)): int8 on {args.backend} "
            f"against float32 on {same} and eager float32"
        )
        for r in rows:
            print(
                f"  batch {r['batch_size']:>4}: eager float32 {r['eager_float32_ms']:.2f}, "
                f"{same} float32 {r[f'{same}_float32_ms']:.2f}, int8 {r['int8_ms']:.2f}  "
                f"({r['speedup_over_eager']:.2f}x over eager, "
                f"{r['speedup_over_same_backend']:.2f}x over {same})"
            )
        result["latency"] = rows
    out = Path(args.out or f"{Path(args.model.split(':')[-1]).stem}-int8{suffix}")
    q.save(out)
    info(f"wrote {out}")
    write_json(args.json, {**result, "out": str(out)})
    return 0
