"""``squeezer prune``: remove channels (structured pruning) or single weights (magnitude, OBD,
OBS) and measure the gain.

One module per command: its options (:func:`add_parser`) beside its body (:func:`run`).
"""

from __future__ import annotations

import argparse
from typing import Any

from squeezer.cli.common import (
    UsageError,
    model_argument,
    positive,
    transform_command,
    transform_options,
)


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "prune",
        help="remove channels (structured pruning) or single weights, and measure the gain",
        description="Remove whole channels, keeping every coupled layer consistent "
        "(residual additions, concatenations, depthwise convolutions, BatchNorm, "
        "flatten), or single weights (--sparsity, by magnitude or second-order saliency), "
        "optionally fine-tune, and print FLOPs, parameters and measured latency before and "
        "after.",
    )
    model_argument(p)
    p.add_argument(
        "--ratio",
        type=float,
        help="fraction of each coupled layer group's channels to remove",
    )
    p.add_argument(
        "--heads",
        type=float,
        metavar="FRACTION",
        help="transformers: fraction of each attention block's heads to remove (Q/K/V and "
        "output projection together)",
    )
    p.add_argument(
        "--mlp",
        type=float,
        metavar="FRACTION",
        help="transformers: fraction of each MLP block's hidden units to remove",
    )
    p.add_argument(
        "--head-importance",
        choices=("l1", "gradient"),
        default="l1",
        help="how heads and units are ranked: l1 (weights) or gradient (Michel et al. 2019, "
        "reads --dataset)",
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
    p.add_argument(
        "--sparsity",
        type=float,
        metavar="FRACTION",
        help="unstructured: fraction of each Linear/Conv2d layer's weights to remove (masked "
        "to zero; the file stores them sparsely), chosen by --saliency",
    )
    p.add_argument(
        "--saliency",
        choices=("magnitude", "obd", "obs"),
        default="magnitude",
        help="which weights --sparsity removes: magnitude (smallest |w|, Han 2015); obd "
        "(Optimal Brain Damage: least h w^2/2 with the Gauss-Newton Hessian diagonal); obs "
        "(layer-wise Optimal Brain Surgeon: least w^2/[H^-1] with the other weights updated "
        "to make up for each removal). obd and obs read --samples training examples",
    )
    p.add_argument(
        "--samples",
        type=positive,
        default=1024,
        metavar="N",
        help="training examples --saliency obd/obs compute their Hessians from (default 1024)",
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

    if args.ratio is None and args.heads is None and args.mlp is None and args.sparsity is None:
        raise UsageError(
            "give --ratio (channels), --heads or --mlp (transformer blocks), or --sparsity "
            "(single weights)"
        )
    for flag in ("ratio", "heads", "mlp", "sparsity"):
        value = getattr(args, flag)
        if value is not None and not 0 <= value < 1:
            raise UsageError(f"--{flag} must be in [0, 1), got {value}")
    exclude = tuple(s for s in (args.ignore or "").split(",") if s)
    channels = (
        sq.pruning.ChannelPruning(
            ratio=args.ratio, criterion=args.criterion, exclude=exclude, round_to=args.round_to
        )
        if args.ratio
        else None
    )
    heads = (
        sq.pruning.HeadPruning(
            heads=args.heads or 0.0,
            mlp=args.mlp or 0.0,
            importance=args.head_importance,
            exclude=exclude,
        )
        if args.heads or args.mlp
        else None
    )

    weights = None
    if args.sparsity is not None:
        kinds = {"magnitude": sq.pruning.Magnitude, "obd": sq.pruning.OBD, "obs": sq.pruning.OBS}
        fields: dict[str, Any] = {"sparsity": args.sparsity, "exclude": exclude}
        if args.saliency != "magnitude":
            fields["samples"] = args.samples
        weights = kinds[args.saliency](**fields)

    def prune(model: Any, x: Any, data: Any) -> dict[str, Any]:
        out: dict[str, Any] = {"ratio": args.ratio, "criterion": args.criterion}
        if channels is not None:
            report = sq.prune_(model, channels, x, data=data)
            print(report)
            out["channels"] = report.to_dict()
        if heads is not None:
            report = sq.prune_(model, heads, x, data=data)
            print(report)
            out["heads"] = report.to_dict()
        if weights is not None:
            report = sq.prune_(model, weights, x, data=data)
            print(report)
            out.update(sparsity=args.sparsity, saliency=args.saliency, weights=report.to_dict())
        return out

    needs = (channels is not None and criterion_class(args.criterion).needs_data) or (
        heads is not None and args.head_importance == "gradient"
    )
    batches = 8 if needs else 0
    if weights is not None and args.saliency != "magnitude":
        batches = max(batches, -(-args.samples // 64))
    return transform_command(args, "pruned", prune, batches=batches)
