"""``squeezer convert``: replace layers by other kinds of layers (compact filters, fast
convolution, stochastic depth) and measure the gain.

One module per command: its options (:func:`add_parser`) beside its body (:func:`run`).
"""

from __future__ import annotations

import argparse
from typing import Any

from squeezer.cli.common import (
    UsageError,
    model_argument,
    positive,
    positive_float,
    transform_command,
    transform_options,
)

FITTED = ("separable", "crelu-pairs")
METHODS = (*FITTED, "winograd", "fft", "stochastic-depth")


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "convert",
        help="replace layers by compact filters or fast convolutions and measure the gain",
        description="Replace a trained model's layers: 'separable' (each kxk conv by a "
        "depthwise kxk and a pointwise 1x1, fitted by least squares on the layer's inputs), "
        "'crelu-pairs' (half the filters, each feeding two channels: CReLU's negated pairs, "
        "fitted likewise), 'winograd' (3x3 stride-1 convs by Winograd F(2x2, 3x3), same "
        "outputs), 'fft' (convs computed by FFT, same outputs), 'stochastic-depth' (the zoo "
        "ResNets' residual branches, survival decaying linearly; for training). Prints each "
        "layer's parameters, FLOPs and (for the fitted ones) relative output error, and says "
        "why a layer stays; then accuracy, optional fine-tuning or distillation, and measured "
        "latency before and after.",
        epilog="Example: squeezer convert vgg11.pt --method separable --exclude features.0 "
        "--finetune-epochs 1 --distill",
    )
    model_argument(p)
    p.add_argument("--method", required=True, choices=METHODS, help="the conversion")
    p.add_argument("--layers", metavar="PATTERNS", help="comma-separated layer name patterns")
    p.add_argument("--exclude", metavar="PATTERNS", help="comma-separated patterns to skip")
    p.add_argument(
        "--multiplier",
        type=positive,
        default=1,
        metavar="M",
        help="separable: depthwise filters per input channel (default 1)",
    )
    p.add_argument(
        "--max-error",
        type=positive_float,
        metavar="E",
        help="separable, crelu-pairs: leave layers whose fit's relative output error is above E",
    )
    p.add_argument(
        "--fit-batches",
        type=positive,
        default=8,
        metavar="N",
        help="separable, crelu-pairs: batches of 64 images of --dataset the fit reads (default 8)",
    )
    p.add_argument(
        "--min-kernel",
        type=positive,
        default=1,
        metavar="K",
        help="fft: convert only kernels at least K wide (default 1)",
    )
    p.add_argument(
        "--final-survival",
        type=positive_float,
        default=0.5,
        metavar="P",
        help="stochastic-depth: the last branch's survival probability (default 0.5)",
    )
    transform_options(p, "converted", "the fit, accuracy and fine-tuning")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import squeezer as sq
    from squeezer.errors import ConfigError

    patterns = tuple(s for s in (args.layers or "").split(",") if s)
    exclude = tuple(s for s in (args.exclude or "").split(",") if s)
    selection = {"layers": patterns, "exclude": exclude}
    try:
        if args.method == "separable":
            config: Any = sq.compact.DepthwiseSeparable(
                multiplier=args.multiplier, max_error=args.max_error, **selection
            )
        elif args.method == "crelu-pairs":
            config = sq.compact.CReLUPairs(max_error=args.max_error, **selection)
        elif args.method == "winograd":
            config = sq.dynamic.Winograd(**selection)
        elif args.method == "fft":
            config = sq.dynamic.FFTConv(min_kernel=args.min_kernel, **selection)
        else:
            config = sq.dynamic.StochasticDepth(final_survival=args.final_survival, **selection)
    except ConfigError as err:
        raise UsageError(str(err)) from None

    def convert(model: Any, x: Any, data: Any) -> dict[str, Any]:
        report = sq.convert_(model, config, x, data=data)
        print(report.format())
        return {"method": args.method, "conversion": report.to_dict()}

    batches = args.fit_batches if args.method in FITTED else 0
    return transform_command(args, "converted", convert, batches=batches)
