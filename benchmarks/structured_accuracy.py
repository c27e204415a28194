"""Structured pruning criteria compared on Fashion-MNIST: accuracy at 2x fewer FLOPs.

A CIFAR-style ResNet-20 and a VGG-11 (BN) are trained on Fashion-MNIST with a short schedule,
then each criterion removes the same fraction of every coupled layer group's channels (enough
for at least 2x fewer FLOPs), and each pruned model is fine-tuned briefly. Reported: accuracy
before, right after pruning and after fine-tuning, FLOPs, parameters and measured speedup
(batch 32, alternating medians). Target of the issue: <= 1.0 point accuracy drop at 2x fewer
FLOPs for the best criterion.

Reproduce (about 30 minutes on 2 CPU cores):

    SQUEEZER_DATA=../shared/data python benchmarks/structured_accuracy.py

Writes benchmarks/results/structured_accuracy.{json,md}.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

import squeezer as sq
from squeezer.analysis import count_flops, time_models

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import elapsed, provenance, write_report

CRITERIA = tuple(sq.pruning.list_criteria())  # every registered criterion
SCHEDULES = {"resnet20": 6, "vgg11_bn": 3}  # baseline epochs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="resnet20,vgg11_bn")
    parser.add_argument("--criteria", default=",".join(CRITERIA))
    parser.add_argument("--ratio", type=float, default=0.32)  # >= 2x fewer FLOPs for both
    parser.add_argument("--finetune-epochs", type=int, default=1)
    parser.add_argument("--limit", type=int, help="use only N training images (smoke runs)")
    parser.add_argument(
        "--no-recalibrate",
        action="store_true",
        help="skip re-estimating BatchNorm statistics after pruning (the first published run)",
    )
    parser.add_argument("--out-name", default="structured_accuracy")
    args = parser.parse_args()
    train, test = sq.data.load("fashion-mnist")
    if args.limit:
        train = train.subset(args.limit)
    x = sq.data.example_inputs(test)
    batches = [
        b
        for _, b in zip(
            range(8), sq.data.loader(train.without_augment(), 64, shuffle=True), strict=False
        )
    ]
    rows = []
    for name in args.models.split(","):
        torch.manual_seed(0)
        base = sq.models.create(name, num_classes=10, in_channels=1, input_size=28)
        epochs = SCHEDULES[name] if not args.limit else 1
        print(f"== {name}: baseline, {epochs} epochs", file=sys.stderr, flush=True)
        sq.fit(base, train, epochs=epochs, lr=0.05, verbose=True)
        top1 = sq.evaluate(base, test)["top1"]
        base_flops = count_flops(base, x)[0]
        for criterion in args.criteria.split(","):
            t0 = time.perf_counter()
            pruned = sq.prune_channels(base, x, args.ratio, criterion, data=batches)
            right_after = sq.evaluate(pruned, test)["top1"]
            recalibrated = None
            if not args.no_recalibrate:
                sq.train.recalibrate_bn_(pruned, train)  # removed channels shift BN inputs
                recalibrated = sq.evaluate(pruned, test)["top1"]
            sq.fit(pruned, train, epochs=args.finetune_epochs, lr=0.01, verbose=True)
            after = sq.evaluate(pruned, test)["top1"]
            flops = count_flops(pruned, x)[0]
            b, p = time_models([base, pruned], x, 32, torch.get_num_threads(), min_run_time=0.5)
            rows.append(
                {
                    "model": name,
                    "criterion": criterion,
                    "ratio": args.ratio,
                    "top1_before": top1,
                    "top1_pruned": right_after,
                    "top1_recalibrated": recalibrated,
                    "top1_after": after,
                    "drop_points": 100 * (top1 - after),
                    "flops": flops,
                    "baseline_flops": base_flops,
                    "flops_reduction": base_flops / flops,
                    "params": sum(q.numel() for q in pruned.parameters()),
                    "baseline_params": sum(q.numel() for q in base.parameters()),
                    "speedup_b32": b.median_ms / p.median_ms,
                    "seconds": time.perf_counter() - t0,
                }
            )
            print(
                f"   {criterion}: {100 * top1:.2f} -> {100 * right_after:.2f} -> "
                f"{100 * after:.2f}%, FLOPs {base_flops / flops:.2f}x",
                file=sys.stderr,
                flush=True,
            )
    report = {
        **provenance("structured_accuracy.py"),
        "schedule": {
            "baseline_epochs": SCHEDULES,
            "finetune_epochs": args.finetune_epochs,
            "baseline_lr": 0.05,
            "finetune_lr": 0.01,
            "ratio": args.ratio,
            "recalibrate_bn": not args.no_recalibrate,
        },
        "rows": rows,
        "total_seconds": elapsed(),
    }
    print(write_report(args.out_name, report, to_markdown))
    return 0


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def to_markdown(report: dict) -> str:
    s = report["schedule"]
    lines = [
        "# Structured pruning criteria on Fashion-MNIST",
        "",
        f"Command: `{report['command']}`  ",
        f"Date: {report['date']}; {report['backend']}; {report['threads']} threads; total "
        f"running time {report['total_seconds'] / 60:.1f} min.",
        "",
        f"Short schedules: baselines trained {s['baseline_epochs']} epochs (SGD, lr "
        f"{s['baseline_lr']}, cosine); every criterion removes {s['ratio']:.0%} of each coupled "
        f"layer group's channels, then {s['finetune_epochs']} fine-tuning epoch(s) at lr "
        f"{s['finetune_lr']}. BatchNorm statistics re-estimated after pruning (before "
        f"fine-tuning): {'yes' if s.get('recalibrate_bn') else 'no'}. Speedup: batch 32, "
        "alternating medians.",
        "",
        "| model | criterion | top-1 before | right after pruning | BN re-estimated | after "
        "fine-tuning | drop (points) | FLOPs reduction | params | measured speedup b=32 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['model']} | {r['criterion']} | {100 * r['top1_before']:.2f}% | "
            f"{100 * r['top1_pruned']:.2f}% | {_pct(r.get('top1_recalibrated'))} | "
            f"{100 * r['top1_after']:.2f}% | "
            f"{r['drop_points']:.2f} | {r['flops_reduction']:.2f}x | "
            f"{r['params']:,} / {r['baseline_params']:,} | {r['speedup_b32']:.2f}x |"
        )
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
