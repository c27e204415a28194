"""Baselines the compression benchmarks start from: the LeNets on MNIST and Fashion-MNIST.

Trains LeNet-300-100 and LeNet-5 on each dataset with squeezer's own loop, then records test
error, parameters, FLOPs, checkpoint size, latency at batch 1 and 256, and running time.

Reproduce (about 10 minutes on 2 CPU cores):

    SQUEEZER_DATA=../shared/data python benchmarks/baselines.py

Writes benchmarks/results/baselines.json and benchmarks/results/baselines.md; the trained
checkpoints go to benchmarks/results/checkpoints/ (not committed; rerun to rebuild them).
Targets on MNIST (the errors Han et al. 2015/2016 start from): LeNet-300-100 <= 1.7%,
LeNet-5 <= 0.9%.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

import squeezer as sq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import RESULTS, elapsed, provenance, write_report

# Plain SGD with momentum, cosine schedule, light augmentation (random 2-pixel shifts; flips
# too on Fashion-MNIST). Epoch counts sized to keep the whole run near 10 minutes here.
# One epoch of linear warm-up: LeNet-5 has no normalization and diverged on Fashion-MNIST at
# lr 0.05 without it.
RECIPES = {
    "lenet300": sq.TrainConfig(
        epochs=30, batch_size=128, lr=0.05, weight_decay=5e-4, warmup_epochs=1
    ),
    "lenet5": sq.TrainConfig(
        epochs=20, batch_size=128, lr=0.03, weight_decay=5e-4, warmup_epochs=1
    ),
}
TARGETS = {("lenet300", "mnist"): 0.017, ("lenet5", "mnist"): 0.009}
PAPER = {("lenet300", "mnist"): 0.0164, ("lenet5", "mnist"): 0.0080}  # Han et al. 2015, Table 1


def run_one(model_name: str, dataset: str, epochs: int | None, ckpt_dir: Path) -> dict:
    train, test = sq.data.load(dataset)
    config = RECIPES[model_name]
    if epochs is not None:
        config = config.replace(epochs=epochs)
    torch.manual_seed(config.seed)
    model = sq.models.create(model_name, num_classes=train.num_classes)
    print(f"== {model_name} on {dataset}: {config.epochs} epochs", file=sys.stderr, flush=True)
    result = sq.fit(model, train, config, val=test, verbose=True)
    metrics = sq.evaluate(model, test)
    ckpt = sq.save_checkpoint(
        model, ckpt_dir / f"{model_name}-{dataset}.pt", meta={"dataset": dataset, **metrics}
    )
    m = sq.measure(model, sq.data.example_inputs(test), batch_sizes=(1, 256), min_run_time=1.0)
    target = TARGETS.get((model_name, dataset))
    error = 1 - metrics["top1"]
    return {
        "model": model_name,
        "dataset": dataset,
        "test_error": error,
        "top1": metrics["top1"],
        "loss": metrics["loss"],
        "target_error": target,
        "meets_target": None if target is None else error <= target,
        "paper_error": PAPER.get((model_name, dataset)),
        "params": m.params,
        "flops": m.flops,
        "size_bytes": m.size_bytes,
        "checkpoint_bytes": ckpt.stat().st_size,
        "latency": [lat.to_dict() for lat in m.latency],
        "train_seconds": result.seconds,
        "config": config.to_dict(),
    }


def to_markdown(report: dict) -> str:
    lines = [
        "# Baselines: LeNets on MNIST and Fashion-MNIST",
        "",
        f"Command: `{report['command']}`  ",
        f"Date: {report['date']}; {report['backend']}; {report['threads']} threads; "
        f"total running time {report['total_seconds'] / 60:.1f} min.",
        "",
        "| model | dataset | test error | target | paper | params | FLOPs | checkpoint bytes "
        "| latency b=1 (ms) | latency b=256 (ms) | train time |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in report["runs"]:
        lat = {x["batch_size"]: x for x in r["latency"]}
        target = "" if r["target_error"] is None else f"<= {100 * r['target_error']:.2f}%"
        if r["meets_target"] is not None:
            target += " met" if r["meets_target"] else " MISSED"
        paper = "" if r["paper_error"] is None else f"{100 * r['paper_error']:.2f}%"
        lines.append(
            f"| {r['model']} | {r['dataset']} | {100 * r['test_error']:.2f}% | {target} | "
            f"{paper} | {r['params']:,} | {r['flops']:,} | {r['checkpoint_bytes']:,} | "
            f"{lat[1]['median_ms']:.3f} +- {lat[1]['iqr_ms']:.3f} | "
            f"{lat[256]['median_ms']:.2f} +- {lat[256]['iqr_ms']:.2f} | "
            f"{r['train_seconds']:.0f} s ({r['config']['epochs']} epochs) |"
        )
    lines += [
        "",
        "FLOPs per example, one multiply-add = 2 FLOPs (torch.utils.flop_counter). Latency: "
        "median +- IQR of repeated blocks (torch.utils.benchmark), PyTorch eager on CPU. "
        "Training: SGD momentum 0.9, one warm-up epoch then cosine, weight decay 5e-4, batch "
        "128, random 2-pixel shifts (and flips on Fashion-MNIST); lr 0.05 for LeNet-300-100, "
        "0.03 for LeNet-5. Paper: Han et al. 2015, Table 1 "
        "(Caffe baselines).",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="lenet300,lenet5")
    parser.add_argument("--datasets", default="mnist,fashion-mnist")
    parser.add_argument("--epochs", type=int, help="override every recipe's epochs (smoke runs)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    runs = [
        run_one(m, d, args.epochs, args.out / "checkpoints")
        for d in args.datasets.split(",")
        for m in args.models.split(",")
    ]
    report = {**provenance("baselines.py"), "runs": runs, "total_seconds": elapsed()}
    if args.out == RESULTS:
        print(write_report("baselines", report, to_markdown))
    else:  # smoke runs elsewhere
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "baselines.json").write_text(json.dumps(report, indent=2) + "\n")
        (args.out / "baselines.md").write_text(to_markdown(report))
        print(to_markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
