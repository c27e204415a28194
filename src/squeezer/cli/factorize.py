"""``squeezer factorize``: replace layers by low-rank blocks and measure the gain.

One module per command: its options (:func:`add_parser`) beside its body (:func:`run`).
"""

from __future__ import annotations

import argparse
from typing import Any

from squeezer.cli.common import (
    UsageError,
    info,
    model_argument,
    transform_command,
    transform_options,
)


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "factorize",
        help="replace layers by low-rank factorized blocks and measure the gain",
        description="Replace convolutions and fully connected layers by low-rank blocks of "
        "plain PyTorch layers (Tucker-2, CP, separable, SVD, tensor train, ...), optionally "
        "refit them to the original activations and fine-tune, and print the per-layer "
        "ranks, parameters and FLOPs, and the measured latency before and after.",
        epilog="Rank specs: an int (absolute rank), a fraction in (0, 1] of each mode's full "
        "rank (1.0 reproduces the layer), 'vbmf' (variational Bayesian matrix factorization, "
        "Kim 2016), 'energy:E' (keep a fraction E of the squared singular values), "
        "'compression:C' or 'flops:F' (the largest rank with C times fewer parameters or F "
        "times fewer FLOPs per layer). Example: squeezer factorize lenet5.pt --method "
        "tucker,svd --rank vbmf --finetune-epochs 1",
    )
    model_argument(p)
    p.add_argument(
        "--method",
        default="tucker,svd",
        metavar="M[,M...]",
        help="methods applied in turn, each to the layers it handles: tucker, cp, separable, "
        "lowrank_bn, monochromatic, bicluster (convolutions); svd, tt, and the structured "
        "matrices circulant, fastfood, ldr, acdc (linear layers) (default tucker,svd)",
    )
    p.add_argument(
        "--rank",
        metavar="SPEC",
        help="rank spec (default: each method's own, 0.5 for the low-rank methods; for ldr "
        "an int, the displacement rank)",
    )
    p.add_argument("--layers", metavar="PATTERNS", help="comma-separated layer name patterns")
    p.add_argument("--exclude", metavar="PATTERNS", help="comma-separated patterns to skip")
    p.add_argument(
        "--force",
        action="store_true",
        help="convert layers even where the block would not have fewer FLOPs",
    )
    p.add_argument(
        "--round-to",
        type=int,
        default=1,
        metavar="N",
        help="every rank a multiple of N (or the full rank): CPU kernels run widths of 8 or 16 "
        "much faster than odd ones; flops:F and compression:C targets still hold (default 1)",
    )
    p.add_argument(
        "--reconstruct",
        type=int,
        default=0,
        metavar="N",
        help="refit each block's last layer on N batches of --dataset (asymmetric "
        "reconstruction, Zhang 2016; default 0: off)",
    )
    transform_options(p, "factorized", "accuracy, reconstruction and fine-tuning")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import squeezer as sq
    from squeezer.errors import ConfigError
    from squeezer.factorization import METHODS

    methods = [m.strip().lower() for m in args.method.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise UsageError(
            f"--method: unknown {', '.join(unknown) or 'empty'}; choose from {', '.join(METHODS)}"
        )
    patterns = tuple(s for s in (args.layers or "").split(",") if s)
    exclude = tuple(s for s in (args.exclude or "").split(",") if s)
    try:
        given = {"rank": args.rank} if args.rank is not None else {}
        configs = [
            METHODS[m](
                layers=patterns, exclude=exclude, force=args.force, round_to=args.round_to, **given
            )
            for m in methods
        ]
    except ConfigError as err:
        raise UsageError(str(err)) from None

    def factorize(model: Any, x: Any, data: Any) -> dict[str, Any]:
        reports = []
        for config in configs:
            report = sq.factorize_(
                model,
                config,
                x,
                calibration=data,
                progress=lambda name, m=config.method: info(f"{m}: {name}"),
            )
            print(report)
            reports.append(report.to_dict())
        return {
            "methods": methods,
            "rank": args.rank,
            "round_to": args.round_to,
            "factorization": reports,
        }

    return transform_command(args, "factorized", factorize, batches=args.reconstruct)
