"""``squeezer search``: per-layer channel settings found automatically under a budget.

One module per command: its options (:func:`add_parser`) beside its body (:func:`run`).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from squeezer.cli.common import (
    UsageError,
    info,
    model_argument,
    positive,
    positive_float,
    transform_command,
    transform_options,
)

METHODS = ("tpe", "random", "nsga2", "amc", "uniform", "morphnet")


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "search",
        help="find per-layer channel settings under a FLOPs, size or latency budget",
        description="Search how many channels to remove from each coupled channel group so "
        "that the pruned model meets --budget with the best validation accuracy. 'tpe' "
        "(default) and 'random' are Optuna samplers over per-group preferences scaled to meet "
        "the budget exactly; 'nsga2' searches the settings themselves for the accuracy / cost "
        "Pareto front; 'amc' is AMC's DDPG agent (He 2018) choosing each group in turn; "
        "'uniform' is the one-ratio baseline; 'morphnet' trains --morph-epochs under a "
        "FLOPs-weighted L1 penalty on the BatchNorm scales, then scales the surviving widths by "
        "one factor back to the budget (MorphNet, within the model's own widths). Each "
        "candidate is scored on held-out training images after re-estimating BatchNorm (and "
        "--search-finetune-steps of SGD). The best "
        "policy is then applied to the model, which is fine-tuned (--finetune-epochs, "
        "--distill), measured against the original and saved. With --storage, several "
        "processes or machines running the same command share one study.",
        epilog="Examples: squeezer search vgg11.pt --budget flops:2 --trials 40 --finetune-epochs "
        "2 --distill;  squeezer search resnet20.pt --method amc --budget flops:3 --episodes 100; "
        "squeezer search m.pt --budget latency:1.5 --backend onnxruntime --storage "
        "sqlite:///study.db  (run it on several machines with a shared PostgreSQL URL)",
    )
    model_argument(p)
    p.add_argument("--method", choices=METHODS, default="tpe", help="the search (default tpe)")
    p.add_argument(
        "--space",
        choices=("channels", "bits"),
        default="channels",
        help="what is chosen per layer: channel ratios (default; budgets flops, params, size, "
        "latency) or bits of weights and inputs (mixed precision, HAQ-style; budget size: the "
        ".sqz file against the float32 one; the result is quantization-aware fine-tuned with "
        "--finetune-epochs)",
    )
    p.add_argument("--min-bits", type=int, default=2, help="bits: the fewest (default 2)")
    p.add_argument("--max-bits", type=int, default=8, help="bits: the most (default 8)")
    p.add_argument(
        "--budget",
        default="flops:2",
        metavar="METRIC:X",
        help="flops, params, size or latency, and how many times smaller (default flops:2)",
    )
    p.add_argument("--trials", type=positive, default=30, help="Optuna trials (default 30)")
    p.add_argument("--episodes", type=positive, default=60, help="amc: episodes (default 60)")
    p.add_argument("--warmup", type=int, default=15, help="amc: random episodes (default 15)")
    p.add_argument(
        "--max-ratio",
        type=positive_float,
        default=0.8,
        help="the most of any group's channels removed (default 0.8)",
    )
    p.add_argument("--criterion", default="l1", help="which channels go (default l1)")
    p.add_argument("--exclude", metavar="PATTERNS", help="layers whose channels stay")
    p.add_argument(
        "--val-examples",
        type=positive,
        default=5000,
        metavar="N",
        help="held-out training images that score candidates (default 5000; the test set is "
        "not used by the search)",
    )
    p.add_argument(
        "--bn-batches",
        type=int,
        default=20,
        metavar="N",
        help="batches of 128 re-estimating BatchNorm per candidate (default 20; 0: none)",
    )
    p.add_argument(
        "--search-finetune-steps",
        type=int,
        default=0,
        metavar="N",
        help="SGD steps per candidate before scoring (default 0)",
    )
    p.add_argument(
        "--latency-batch", type=positive, default=1, help="latency budget: batch (default 1)"
    )
    p.add_argument("--morph-epochs", type=positive, default=2, help="morphnet: epochs (2)")
    p.add_argument(
        "--strength",
        type=positive_float,
        default=1e-4,
        help="morphnet: the penalty's lambda (default 1e-4)",
    )
    p.add_argument(
        "--threshold",
        type=positive_float,
        default=1e-2,
        help="morphnet: |gamma| below which a channel counts as dead (default 0.01)",
    )
    p.add_argument("--storage", metavar="URL", help="Optuna storage shared by workers")
    p.add_argument("--study", default="squeezer-search", help="the study's name in --storage")
    p.add_argument("--seed", type=int, default=0, help="sampler / agent seed (default 0)")
    transform_options(p, "pruned", "the search, accuracy and fine-tuning")
    p.set_defaults(run=run)


def parse_budget(text: str, backend: str, batch: int) -> Any:
    from squeezer.automation import Budget
    from squeezer.automation.space import METRICS
    from squeezer.errors import ConfigError

    metric, _, amount = text.partition(":")
    if metric not in METRICS or not amount:
        raise UsageError(f"--budget: expected METRIC:X with METRIC one of {', '.join(METRICS)}, "
                         f"got {text!r}")  # fmt: skip
    try:
        return Budget(metric, float(amount), backend=backend, batch_size=batch)
    except (ValueError, ConfigError) as exc:
        raise UsageError(f"--budget: {exc}") from None


def run(args: argparse.Namespace) -> int:
    import torch

    import squeezer as sq
    from squeezer.automation import (
        AMCConfig,
        BitSpace,
        ChannelSpace,
        Evaluator,
        amc_search,
        search,
        uniform,
    )
    from squeezer.automation.search import require_reachable
    from squeezer.cli.common import dataset_splits, load_model
    from squeezer.data import canonical_name

    if not 0 < args.max_ratio < 1:
        raise UsageError(f"--max-ratio must be in (0, 1), got {args.max_ratio}")
    budget = parse_budget(args.budget, args.backend, args.latency_batch)
    exclude = tuple(s for s in (args.exclude or "").split(",") if s)
    _, source = load_model(args.model, args)
    dataset = canonical_name(args.dataset or source["meta"].get("dataset") or "mnist")
    args.dataset = dataset
    train, _ = dataset_splits(dataset, args.data_dir, augment=False, limit=args.limit)
    n_val = min(args.val_examples, len(train) // 2)
    val = train.subset(torch.arange(len(train) - n_val, len(train)))
    rest = train.subset(torch.arange(0, len(train) - n_val))
    evaluator = Evaluator(val, train=rest, bn_batches=args.bn_batches,
                          finetune_steps=args.search_finetune_steps, lr=args.lr)  # fmt: skip

    if args.storage and args.method in ("amc", "uniform"):
        raise UsageError(f"--storage shares Optuna studies (tpe, random, nsga2), not {args.method}")
    if args.space == "bits" and budget.metric != "size":
        raise UsageError("--space bits: the budget must be size:X (the file against float32)")

    def prune(model: Any, x: Any, data: Any) -> dict[str, Any]:
        if args.space == "bits":
            space: Any = BitSpace(model, x, data, min_bits=args.min_bits,
                                  max_bits=args.max_bits, exclude=exclude)  # fmt: skip
            what = f"{len(space.names)} layers' bits"
        else:
            space = ChannelSpace(model, x, criterion=args.criterion, max_ratio=args.max_ratio,
                                 exclude=exclude, data=data)  # fmt: skip
            what = f"{len(space.names)} channel groups"
        if not budget.measured:
            require_reachable(space, budget)
        if args.method == "morphnet" and not any(
            isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules()
        ):
            raise UsageError("--method morphnet needs BatchNorm scales to regularize; this "
                             "model has no BatchNorm")  # fmt: skip
        info(f"{args.method} search over {what} for "
             f"{budget.describe()}, candidates scored on {n_val} held-out training "
             "images")  # fmt: skip
        if args.method == "amc":
            cfg = AMCConfig(episodes=args.episodes, warmup=min(args.warmup, args.episodes),
                            seed=args.seed)  # fmt: skip
            result = amc_search(space, evaluator, budget, cfg)
        elif args.method == "morphnet":
            from squeezer.automation import expand, shrink

            if args.space == "bits":
                raise UsageError("--method morphnet chooses channels, not bits")
            space = ChannelSpace(model, x, criterion="bn_scale", max_ratio=args.max_ratio,
                                 exclude=exclude)  # fmt: skip
            t0 = time.process_time()
            alive, _ = shrink(
                space, rest, strength=args.strength, epochs=args.morph_epochs, lr=args.lr,
                threshold=args.threshold, metric=budget.metric,
            )  # fmt: skip
            factor, settings = expand(space, alive, budget)
            live = ", ".join(f"{k} {v:.2f}" for k, v in alive.items())
            info(f"MorphNet: live fractions {live}; expansion factor {factor:.3f}")
            result = sq.automation.SearchResult("morphnet", budget.metric, budget, 0.0, None)
            result.original_cost = space.measure(space.model, budget)
            built = space.build(settings)
            cost = space.measure(built, budget)
            result.trials.append(sq.automation.TrialResult(
                0, settings, evaluator(built), cost, result.original_cost / cost, 0.0, "morphnet"
            ))  # fmt: skip
            result.cpu_seconds = time.process_time() - t0
            args.criterion = "bn_scale"  # the channels MorphNet's gammas chose
        elif args.method == "uniform":
            result = sq.automation.SearchResult("uniform", budget.metric, budget, 0.0, None)
            one = uniform(space, budget, evaluator)
            result.original_cost = one.cost * one.reduction
            result.trials.append(one)
        else:
            result = search(model, space, evaluator, budget, trials=args.trials,
                            sampler=args.method, storage=args.storage, study_name=args.study,
                            seed=args.seed)  # fmt: skip
        print(result.format())
        best = result.best
        if best is None:
            raise UsageError("no candidate met the budget (see the trials above)")
        if args.space == "bits":
            config: Any = sq.quantization.QAT(first_last_bits=None, per_layer=best.settings,
                                              exclude=exclude)  # fmt: skip
            sq.quantize_(model, config, x, data=data)
        else:
            config = sq.pruning.ChannelPruning(
                ratio=0.0, per_layer=best.settings, criterion=args.criterion, exclude=exclude
            )
            sq.prune_(model, config, x, data=data)
        return {"search": result.to_dict(), "policy": best.settings, "budget": args.budget}

    from squeezer.pruning.criteria import criterion_class

    batches = 8 if args.space == "bits" or criterion_class(args.criterion).needs_data else 0
    return transform_command(args, "searched", prune, batches=batches)
