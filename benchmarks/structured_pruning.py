"""Structured pruning: FLOPs reduction against measured speedup on a CPU.

VGG-16 (BN, ImageNet classifier), ResNet-50 and MobileNetV2 at 224x224 with random weights;
channel ratios 0.25, 0.5 and 0.75 removed by the L1 criterion from every coupled layer group
(the stem and the classifier's output are kept by the dependency graph); batch 1 and 32; one
and two threads. For each model, batch size and thread count, the baseline and the three
pruned models are timed in alternating blocks in one run (medians). Target of the issue: at
batch 32, measured speedup >= 0.8 x the FLOPs reduction factor.

Reproduce (about 10 minutes on 2 CPU cores):

    python benchmarks/structured_pruning.py

    python benchmarks/structured_pruning.py --backend eager-fused-cl --out-name pruning_deploy

Writes benchmarks/results/structured_pruning.{json,md} (or the --out-name). With
``--backend eager-fused-cl`` both baseline and pruned models are timed after BatchNorm folding
and conversion to channels-last, the usual CPU deployment steps; FLOPs are counted on the
unfused models either way. The accuracy half of the issue's benchmark is
benchmarks/structured_accuracy.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

import squeezer as sq
from squeezer.analysis import count_flops, time_models

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import elapsed, provenance, write_report

MODELS = ("vgg16_bn_imagenet", "resnet50", "mobilenet_v2")
RATIOS = (0.25, 0.5, 0.75)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-sizes", default="1,32")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--rounds", type=int, default=3, help="timed blocks per model, at least")
    parser.add_argument(
        "--round-to",
        type=int,
        default=1,
        help="keep a multiple of N channels per group (default 1)",
    )
    parser.add_argument(
        "--backend",
        choices=("eager", "eager-fused-cl"),
        default="eager",
        help="eager: models as built, NCHW; eager-fused-cl: BatchNorm folded into the "
        "convolutions and channels-last layout, for baseline and pruned alike (default eager)",
    )
    parser.add_argument(
        "--out-name",
        default="structured_pruning",
        help="results file name (default structured_pruning)",
    )
    args = parser.parse_args()
    x = torch.randn(1, 3, args.size, args.size)
    rows = []
    for name in args.models.split(","):
        torch.manual_seed(0)
        base = sq.models.create(name, num_classes=1000).eval()
        variants = [
            sq.prune_channels(base, x, ratio=r, round_to=args.round_to).eval() for r in RATIOS
        ]
        flops = [count_flops(m, x)[0] for m in (base, *variants)]
        params = [sum(p.numel() for p in m.parameters()) for m in (base, *variants)]
        fused_cl = args.backend == "eager-fused-cl"
        timed = [
            sq.analysis.inference_copy(m, channels_last=True) if fused_cl else m
            for m in (base, *variants)
        ]
        layout = torch.channels_last if fused_cl else torch.contiguous_format
        for batch in [int(b) for b in args.batch_sizes.split(",")]:
            for threads in [int(t) for t in args.threads.split(",")]:
                print(f"== {name} batch {batch}, {threads} thread(s)", file=sys.stderr, flush=True)
                lat = time_models(
                    timed,
                    x,
                    batch,
                    threads,
                    min_run_time=0.0,
                    min_rounds=args.rounds,
                    memory_format=layout,
                )
                for r, v in enumerate(RATIOS, start=1):
                    fr, sp = flops[0] / flops[r], lat[0].median_ms / lat[r].median_ms
                    rows.append(
                        {
                            "model": name,
                            "ratio": v,
                            "batch_size": batch,
                            "threads": threads,
                            "params": params[r],
                            "baseline_params": params[0],
                            "flops": flops[r],
                            "baseline_flops": flops[0],
                            "flops_reduction": fr,
                            "baseline_ms": lat[0].median_ms,
                            "pruned_ms": lat[r].median_ms,
                            "baseline_iqr_ms": lat[0].iqr_ms,
                            "pruned_iqr_ms": lat[r].iqr_ms,
                            "runs": lat[r].runs,
                            "speedup": sp,
                            "speedup_over_flops": sp / fr,
                            "target_met": None if batch < 32 else sp >= 0.8 * fr,
                        }
                    )
                    print(
                        f"   ratio {v}: FLOPs {fr:.2f}x, measured {sp:.2f}x",
                        file=sys.stderr,
                        flush=True,
                    )
    deploy = ", BatchNorm folded, channels-last" if args.backend == "eager-fused-cl" else ""
    report = {
        **provenance("structured_pruning.py", sq.analysis.backend_name() + deploy),
        "backend_option": args.backend,
        "input": [3, args.size, args.size],
        "criterion": "l1",
        "round_to": args.round_to,
        "rows": rows,
        "total_seconds": elapsed(),
    }
    print(write_report(args.out_name, report, to_markdown))
    return 0


def to_markdown(report: dict) -> str:
    lines = [
        "# Structured pruning: FLOPs reduction against measured CPU speedup",
        "",
        f"Command: `{report['command']}`  ",
        f"Date: {report['date']}; {report['backend']}; input {tuple(report['input'])}, random "
        f"weights, L1 criterion, channel counts rounded to multiples of "
        f"{report.get('round_to', 1)}; total running time {report['total_seconds'] / 60:.1f} min.",
        "",
        "Ratio = fraction of each coupled layer group's channels removed. Speedup = baseline "
        "median / pruned median, both timed alternately in one run. Target: at batch 32, "
        "speedup >= 0.8 x FLOPs reduction.",
        "",
        "| model | ratio | batch | threads | params | FLOPs reduction | baseline ms | pruned ms "
        "| measured speedup | speedup / FLOPs reduction | target |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in report["rows"]:
        target = "" if r["target_met"] is None else ("met" if r["target_met"] else "MISSED")
        lines.append(
            f"| {r['model']} | {r['ratio']} | {r['batch_size']} | {r['threads']} | "
            f"{r['params']:,} / {r['baseline_params']:,} | {r['flops_reduction']:.2f}x | "
            f"{r['baseline_ms']:.1f} | {r['pruned_ms']:.1f} | {r['speedup']:.2f}x | "
            f"{r['speedup_over_flops']:.2f} | {target} |"
        )
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
