"""Optimal Brain Damage and layer-wise Optimal Brain Surgeon against magnitude pruning, on a
trained LeNet-300-100 (MNIST), at 90-98% sparsity, without retraining.

    python benchmarks/second_order.py                          # about 10 minutes on 2 cores
    python benchmarks/second_order.py --sparsities 0.9 --samples 1024

Every method removes the same number of weights from the same trained model (the checkpoint
``results/checkpoints/lenet300-mnist.pt`` the other benchmarks share, trained here when
missing). "layer" removes the same fraction from each of fc1, fc2 and fc3; "global" uses one
threshold on a saliency across the layers, which then keep different fractions. OBD's
saliency ``h w^2 / 2`` is in units of the training loss for every layer, so a global
threshold is meaningful; OBS's costs are each layer's own output error, so OBS is per layer
only. Hessians are computed from ``--samples`` training images. Test error is on the 10,000
MNIST test images. Writes results/second_order.{json,md}.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import squeezer as sq
from harness import elapsed, provenance, trained, write_report

METHODS = {
    "magnitude, layer": lambda s, n: sq.pruning.Magnitude(sparsity=s),
    "magnitude, global": lambda s, n: sq.pruning.Magnitude(sparsity=s, scope="global"),
    "OBD, layer": lambda s, n: sq.pruning.OBD(sparsity=s, samples=n),
    "OBD, global": lambda s, n: sq.pruning.OBD(sparsity=s, scope="global", samples=n),
    "OBS, layer": lambda s, n: sq.pruning.OBS(sparsity=s, samples=n),
}


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.manual_seed(0)
    train, test = sq.data.load("mnist")
    model = trained("lenet300", "mnist", train, epochs=20).eval()
    base = 1.0 - sq.evaluate(model, test)["top1"]
    print(f"LeNet-300-100: {base:.2%} test error")
    loader = sq.data.loader(train.without_augment(), 256, shuffle=True, seed=0)
    batches = [b for _, b in zip(range(-(-args.samples // 256)), loader, strict=False)]
    rows = []
    for sparsity in args.sparsities:
        for name, make in METHODS.items():
            pruned = copy.deepcopy(model)
            t0 = time.perf_counter()
            report = sq.prune_(pruned, make(sparsity, args.samples), data=batches)
            seconds = time.perf_counter() - t0
            err = 1.0 - sq.evaluate(pruned, test)["top1"]
            layers = sq.pruning.sparsity_of(pruned)
            row = {
                "sparsity": sparsity,
                "method": name,
                "test_error": err,
                "layer_sparsity": layers,
                "total_sparsity": report.to_dict().get("sparsity"),
                "seconds": seconds,
            }
            rows.append(row)
            print(f"{sparsity:.0%} {name:18s} error {err:7.2%}  "
                  + " ".join(f"{k} {v:.3f}" for k, v in layers.items())
                  + f"  {seconds:5.1f} s  [{elapsed():.0f} s]", flush=True)  # fmt: skip
    return {
        **provenance("second_order.py"),
        "model": "lenet300 (LeNet-300-100), MNIST",
        "baseline_error": base,
        "samples": args.samples,
        "rows": rows,
    }


def to_markdown(report: dict[str, Any]) -> str:
    sparsities = sorted({r["sparsity"] for r in report["rows"]})
    methods = list(dict.fromkeys(r["method"] for r in report["rows"]))
    cell = {(r["sparsity"], r["method"]): r for r in report["rows"]}
    lines = [
        "# Second-order pruning without retraining: OBD and layer-wise OBS against magnitude",
        "",
        f"`{report['command']}` ({report['date']}, torch {report['torch']}, "
        f"{report['threads']} threads)",
        "",
        f"{report['model']}: {report['baseline_error']:.2%} test error before pruning. "
        f"Hessians from {report['samples']:,} training images; no retraining after pruning. "
        "Test error on the 10,000 MNIST test images:",
        "",
        "| sparsity | " + " | ".join(methods) + " |",
        "|---|" + "---|" * len(methods),
    ]
    for s in sparsities:
        vals = [f"{cell[(s, m)]['test_error']:.2%}" if (s, m) in cell else "" for m in methods]
        lines.append(f"| {s:.0%} | " + " | ".join(vals) + " |")
    lines += [
        "",
        "Layer sparsities the global scopes arrived at (fc1 / fc2 / fc3), and seconds per "
        "pruning (2 CPU cores):",
        "",
        "| sparsity | method | fc1 | fc2 | fc3 | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        ls = r["layer_sparsity"]
        lines.append(
            f"| {r['sparsity']:.0%} | {r['method']} | {ls.get('fc1', 0):.3f} | "
            f"{ls.get('fc2', 0):.3f} | {ls.get('fc3', 0):.3f} | {r['seconds']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sparsities", default="0.9,0.95,0.97,0.98",
                   type=lambda s: [float(v) for v in s.split(",")])  # fmt: skip
    p.add_argument("--samples", type=int, default=2048, help="images the Hessians read")
    args = p.parse_args()
    report = run(args)
    print(write_report("second_order", report, to_markdown))


if __name__ == "__main__":
    main()
