"""``squeezer prune``: remove channels (structured pruning) and measure the gain.

One module per command: its options (:func:`add_parser`) beside its body (:func:`run`).
"""

from __future__ import annotations

import argparse
from typing import Any

from squeezer.cli.common import (
    UsageError,
    positive,
    transform_command,
    transform_options,
)


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "prune",
        help="remove channels (structured pruning) and measure the gain",
        description="Remove whole channels, keeping every coupled layer consistent "
        "(residual additions, concatenations, depthwise convolutions, BatchNorm, "
        "flatten), optionally fine-tune, and print FLOPs, parameters and measured "
        "latency before and after.",
    )
    p.add_argument(
        "model",
        metavar="MODEL_OR_CHECKPOINT",
        help="a checkpoint, a .sqz file, a module:callable factory (package.module:function "
        "building your own model; give --input-shape), or a zoo name (random weights)",
    )
    p.add_argument(
        "--ratio",
        type=float,
        required=True,
        help="fraction of each coupled layer group's channels to remove",
    )
    from squeezer.pruning.criteria import criterion_class, list_criteria

    p.add_argument(
        "--criterion",
        choices=list_criteria(),
        default="l1",
        help="which channels go: "
        + "; ".join(f"{n}: {criterion_class(n).summary}" for n in list_criteria())
        + " (the criteria that read data use --dataset)",
    )
    p.add_argument("--ignore", metavar="LAYERS", help="comma-separated layer names to keep")
    p.add_argument(
        "--round-to",
        type=positive,
        default=1,
        metavar="N",
        help="keep a multiple of N channels per group (default 1)",
    )
    transform_options(p, "pruned", "accuracy and fine-tuning")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import squeezer as sq
    from squeezer.pruning.criteria import criterion_class

    if not 0 <= args.ratio < 1:
        raise UsageError(f"--ratio must be in [0, 1), got {args.ratio}")
    config = sq.pruning.ChannelPruning(
        ratio=args.ratio,
        criterion=args.criterion,
        exclude=tuple(s for s in (args.ignore or "").split(",") if s),
        round_to=args.round_to,
    )

    def prune(model: Any, x: Any, data: Any) -> dict[str, Any]:
        report = sq.prune_(model, config, x, data=data)
        print(report)
        return {"ratio": args.ratio, "criterion": args.criterion, "channels": report.to_dict()}

    batches = 8 if criterion_class(args.criterion).needs_data else 0
    return transform_command(args, "pruned", prune, batches=batches)
