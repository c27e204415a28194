"""``squeezer train``: train a zoo model (or a factory's) on a dataset, resumably.

One module per command: its options (:func:`add_parser`) beside its body (:func:`run`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from squeezer.cli.common import (
    UsageError,
    build_factory,
    check_fits,
    create_for,
    data_options,
    dataset_splits,
    device_option,
    fit_on_device,
    info,
    is_factory,
    json_option,
    nonnegative_float,
    positive,
    positive_float,
    write_json,
)


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "train",
        help="train a zoo model, or your own (module:callable), on a dataset",
        description="Train a model of the zoo, or one your own code builds, from scratch and "
        "save a checkpoint after every epoch (resumable with --resume).",
    )
    p.add_argument(
        "model",
        metavar="MODEL",
        help="a zoo model name (see 'squeezer models') or a package.module:callable factory",
    )
    p.add_argument(
        "--dataset",
        required=True,
        metavar="NAME",
        help="mnist, fashion-mnist, cifar10, cifar100, svhn or digits",
    )
    p.add_argument(
        "--epochs",
        type=positive,
        default=10,
        metavar="N",
        help="passes over the training data (default: 10)",
    )
    p.add_argument(
        "--out", metavar="CHECKPOINT", help="checkpoint to write (default: MODEL-DATASET.pt)"
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue training the --out checkpoint from its last epoch",
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing --out")
    p.add_argument(
        "--batch-size",
        type=positive,
        default=128,
        metavar="N",
        help="images per step (default: 128)",
    )
    p.add_argument(
        "--optimizer",
        choices=("sgd", "adam", "adamw"),
        default="sgd",
        help="default: sgd with momentum",
    )
    p.add_argument(
        "--lr", type=positive_float, default=0.05, help="peak learning rate (default: 0.05)"
    )
    p.add_argument(
        "--momentum", type=nonnegative_float, default=0.9, help="SGD momentum (default: 0.9)"
    )
    p.add_argument(
        "--weight-decay",
        type=nonnegative_float,
        default=5e-4,
        help="L2 weight decay (default: 5e-4)",
    )
    p.add_argument(
        "--schedule",
        choices=("cosine", "step", "linear", "constant"),
        default="cosine",
        help="learning-rate schedule (default: cosine)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--no-augment", action="store_true", help="train without random crops and flips")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    device_option(p)
    data_options(p)
    json_option(p)
    p.set_defaults(run=run)


def _train_state(path: Path) -> dict[str, Any] | None:
    from squeezer.train import read_checkpoint

    return read_checkpoint(path).get("train_state") if path.exists() else None


def run(args: argparse.Namespace) -> int:
    import squeezer as sq
    from squeezer.data import canonical_name
    from squeezer.models import model_fn

    factory = is_factory(args.model)
    if factory:  # the user's own architecture, freshly built
        user_model = build_factory(args.model)
    else:
        model_fn(args.model)  # unknown model: fail before reading data
    dataset = canonical_name(args.dataset)
    train, test = dataset_splits(
        dataset, args.data_dir, augment=not args.no_augment, limit=args.limit
    )
    if factory:
        model = user_model
        model.input_shape = tuple(train.input_shape)
        check_fits(model, train.input_shape, train.num_classes, dataset)
    else:
        model = create_for(args.model, train)
    config = sq.TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        optimizer=args.optimizer,
        lr=args.lr,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        schedule=args.schedule,
        seed=args.seed,
    )
    stem = args.model.rpartition(":")[2] if factory else args.model
    out = Path(args.out or f"{stem}-{dataset}.pt")
    if out.exists() and not args.resume and not args.force:
        raise UsageError(f"{out} exists; pass --resume to continue it or --force to overwrite")
    info(
        f"training {args.model} on {dataset} ({len(train):,} images) for {args.epochs} "
        f"epoch(s); checkpoint {out}"
    )
    result = fit_on_device(
        args, model, train, config, val=test, checkpoint=out, resume=args.resume,
        verbose=not args.quiet,
    )  # fmt: skip
    metrics = sq.evaluate(model, test)
    sq.save_checkpoint(
        model,
        out,
        train_state=_train_state(out),
        meta={
            "dataset": dataset,
            "top1": metrics["top1"],
            "loss": metrics["loss"],
            "epochs": args.epochs,
        },
    )
    info(
        f"test top1 {metrics['top1']:.4f} (error {100 * (1 - metrics['top1']):.2f}%), "
        f"loss {metrics['loss']:.4f}; saved {out}"
    )
    write_json(
        args.json,
        {
            "model": args.model,
            "dataset": dataset,
            "checkpoint": str(out),
            "top1": metrics["top1"],
            "top5": metrics.get("top5"),
            "loss": metrics["loss"],
            "epochs": args.epochs,
            "resumed_from_epoch": result.start_epoch,
            "config": config.to_dict(),
            "history": result.history,
            "seconds": result.seconds,
        },
    )
    return 0
