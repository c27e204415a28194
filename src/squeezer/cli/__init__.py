"""The ``squeezer`` command line: a thin shell over the Python API.

Every error a user can cause prints one line, ``squeezer: error: ...``, and exits non-zero;
set ``SQUEEZER_DEBUG=1`` to see the traceback instead.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from squeezer import __version__
from squeezer.cli.common import (
    data_options,
    json_option,
    layout_option,
    model_options,
    nonnegative_float,
    positive,
    positive_float,
)

EXIT_ERROR = 1
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line that points at ``--help``."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _transform_options(p: argparse.ArgumentParser, adjective: str, uses: str) -> None:
    """Options shared by the commands that transform a model, fine-tune it and measure it."""
    p.add_argument(
        "--finetune-epochs",
        type=int,
        default=0,
        metavar="N",
        help=f"fine-tune the {adjective} model for N epochs (default 0)",
    )
    p.add_argument("--lr", type=positive_float, default=0.01, help="fine-tuning learning rate")
    p.add_argument(
        "--dataset",
        metavar="NAME",
        help=f"data for {uses} (default: the checkpoint's)",
    )
    p.add_argument(
        "--batch-sizes",
        default="1,32",
        metavar="B[,B...]",
        help="batch sizes to time (default: 1,32)",
    )
    p.add_argument(
        "--min-run-time",
        type=positive_float,
        default=0.5,
        metavar="SECONDS",
        help="seconds of timing per model and setting (default 0.5)",
    )
    p.add_argument(
        "--out",
        metavar="FILE",
        help=f"the {adjective} model: .sqz, or a .pt checkpoint (default NAME-{adjective}.sqz)",
    )
    layout_option(p)
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    model_options(p)
    data_options(p)
    json_option(p)


def build_parser() -> argparse.ArgumentParser:
    from squeezer.cli import commands

    parser = _Parser(
        prog="squeezer",
        description="Make trained PyTorch networks smaller and faster, and measure by how "
        "much: size, speed (wall clock) and accuracy side by side.",
        epilog="Datasets are looked for in --data-dir, $SQUEEZER_DATA/<name>, "
        "~/.cache/squeezer/<name> and /usr/share/datasets/<name>, and downloaded "
        "when missing. Run 'squeezer COMMAND --help' for each command.",
    )
    parser.add_argument("--version", action="version", version=f"squeezer {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser(
        "train",
        help="train a zoo model on a dataset",
        description="Train a model of the zoo from scratch and save a "
        "checkpoint after every epoch (resumable with --resume).",
    )
    p.add_argument("model", metavar="MODEL", help="zoo model name (see 'squeezer models')")
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
    data_options(p)
    json_option(p)
    p.set_defaults(run=commands.cmd_train)

    p = sub.add_parser(
        "evaluate",
        help="test accuracy and loss of a checkpoint",
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
    p.set_defaults(run=commands.cmd_evaluate)

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
    layout_option(p)
    json_option(p)
    p.set_defaults(run=commands.cmd_measure)

    p = sub.add_parser(
        "demo",
        help="train LeNet-300-100 on MNIST and measure it",
        description="Train LeNet-300-100 on MNIST (or, offline without MNIST, "
        "scikit-learn's digits) and print the measurement table.",
    )
    p.add_argument(
        "--epochs", type=positive, default=4, metavar="N", help="training epochs (default: 4)"
    )
    p.add_argument("--data-dir", metavar="DIR", help="folder to look in first for MNIST")
    p.add_argument("--out", metavar="CHECKPOINT", help="also save the trained model")
    json_option(p)
    p.set_defaults(run=commands.cmd_demo)

    p = sub.add_parser(
        "compress",
        help="compress a model with a recipe (Deep Compression)",
        description="Prune with iterative retraining, share weights by k-means "
        "with centroid fine-tuning, and Huffman code into a .sqz "
        "file (Han, Mao & Dally 2016). Prints the paper's Table 1 "
        "for this model plus per-stage and per-layer breakdowns.",
    )
    p.add_argument(
        "model",
        metavar="MODEL_OR_CHECKPOINT",
        help="a checkpoint, a .sqz file, a module:callable factory, or a zoo name (a "
        "baseline is trained first)",
    )
    p.add_argument(
        "--recipe",
        choices=("deep-compression",),
        default="deep-compression",
        help="the pipeline (default: deep-compression)",
    )
    p.add_argument(
        "--config",
        metavar="YAML",
        help="recipe parameters (per-layer sparsity, bits, epochs...); unknown keys are rejected",
    )
    p.add_argument(
        "--dataset",
        metavar="NAME",
        help="data for fine-tuning and accuracy (default: the checkpoint's, or mnist)",
    )
    p.add_argument("--out", metavar="FILE", help="the .sqz file (default: NAME-DATASET.sqz)")
    p.add_argument("--force", action="store_true", help="overwrite an existing --out")
    p.add_argument(
        "--quick",
        action="store_true",
        help="one epoch per stage and one pruning round (smoke runs)",
    )
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    model_options(p)
    data_options(p)
    json_option(p)
    p.set_defaults(run=commands.cmd_compress)

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
    _transform_options(p, "pruned", "accuracy and fine-tuning")
    p.set_defaults(run=commands.cmd_prune)

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
    p.add_argument(
        "model",
        metavar="MODEL_OR_CHECKPOINT",
        help="a checkpoint, a .sqz file, a module:callable factory (package.module:function "
        "building your own model; give --input-shape), or a zoo name (random weights)",
    )
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
        "--reconstruct",
        type=int,
        default=0,
        metavar="N",
        help="refit each block's last layer on N batches of --dataset (asymmetric "
        "reconstruction, Zhang 2016; default 0: off)",
    )
    _transform_options(p, "factorized", "accuracy, reconstruction and fine-tuning")
    p.set_defaults(run=commands.cmd_factorize)

    from squeezer.cli import run as run_command

    run_command.add_parser(sub)

    p = sub.add_parser(
        "inspect",
        help="what a .sqz file holds, tensor by tensor",
        description="Per tensor: shape, encoding, sparsity, codebook index "
        "width, codebook size, Huffman average code length beside "
        "the entropy, relative-index width, bytes.",
    )
    p.add_argument("file", metavar="FILE", help="a .sqz file")
    json_option(p)
    p.set_defaults(run=commands.cmd_inspect)

    p = sub.add_parser(
        "models", help="list the zoo's models", description="List registered model names."
    )
    p.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'lenet*'")
    p.set_defaults(run=commands.cmd_models)

    p = sub.add_parser(
        "datasets",
        help="list datasets and where they are looked for",
        description="List dataset names and the folders searched for each.",
    )
    p.add_argument("--data-dir", metavar="DIR", help="folder to look in first")
    p.set_defaults(run=commands.cmd_datasets)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    debug = bool(os.environ.get("SQUEEZER_DEBUG"))
    from squeezer.cli import common

    try:
        if getattr(args, "json", None) == "-":
            common.JSON_STREAM[0] = sys.stdout
            with contextlib.redirect_stdout(sys.stderr):
                return int(args.run(args) or 0)
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("squeezer: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if debug:
            raise
        from squeezer.errors import SqueezerError

        kind = "" if isinstance(exc, SqueezerError | OSError) else f"{type(exc).__name__}: "
        message = " ".join(str(exc).split()) or type(exc).__name__
        if isinstance(exc, OSError) and exc.filename and exc.strerror:
            message = f"{exc.filename}: {exc.strerror}"
        print(f"squeezer {args.command}: error: {kind}{message}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        common.JSON_STREAM[0] = None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
