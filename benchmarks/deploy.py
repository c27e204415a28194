"""Channel pruning timed on deployment backends: eager PyTorch, torch.compile and ONNX Runtime.

    python benchmarks/deploy.py                      # VGG-16, ResNet-50, MobileNetV2 (~80 min)
    python benchmarks/deploy.py --models resnet50 --ratios 0.5 --backends eager,onnxruntime

For each model (random weights, 3 x 224 x 224, L1 criterion) and ratio, the original and the
pruned model are prepared on each backend (compiled, or exported to ONNX and loaded in an ONNX
Runtime session with the same thread count; ``-fused-cl``: BatchNorm folded into the
convolutions and channels-last layout first, for eager and compile) and timed alternately in
one run at the given batch size; medians. Compile and export seconds are reported apart from
the latency. Each ONNX file is also checked: max |ONNX Runtime - PyTorch| on the example.
Target (issue 11): speedup >= 0.8x the FLOPs reduction at every ratio on at least one real
backend.
Writes results/deploy.{json,md}.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import squeezer as sq
from harness import elapsed, on_backend, provenance, read_report, write_report
from squeezer.analysis.counting import count_flops, count_params

MODELS = ("vgg16_bn_imagenet", "resnet50", "mobilenet_v2")


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    x = torch.randn(1, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    rows = []
    for name in args.models.split(","):
        torch.manual_seed(0)
        base = sq.models.create(name).eval()
        flops0 = count_flops(base, (x,))[0]
        prepared_base: dict[str, Any] = {}
        for ratio in [float(r) for r in args.ratios.split(",")]:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pruned = sq.prune_channels(base, x, ratio=ratio, round_to=args.round_to).eval()
            flops = flops0 / count_flops(pruned, (x,))[0]
            for backend in args.backends.split(","):
                if backend not in prepared_base:
                    prepared_base[backend] = on_backend([base], backend, x, args.threads)
                (b,), layout, (b_seconds,) = prepared_base[backend]
                (p,), _, (p_seconds,) = on_backend([pruned], backend, x, args.threads)
                diff = None
                if backend == "onnxruntime":
                    with torch.no_grad():
                        diff = float((p(x) - pruned(x)).abs().max())
                lat = sq.analysis.time_models(
                    [b, p], x, args.batch, args.threads, min_run_time=args.min_run_time,
                    min_rounds=args.rounds, memory_format=layout,
                )  # fmt: skip
                row = {
                    "model": name,
                    "ratio": ratio,
                    "backend": backend,
                    "batch": args.batch,
                    "threads": args.threads,
                    "round_to": args.round_to,
                    "params": count_params(pruned),
                    "params_before": count_params(base),
                    "flops_reduction": flops,
                    "baseline_ms": lat[0].median_ms,
                    "pruned_ms": lat[1].median_ms,
                    "speedup": lat[0].median_ms / lat[1].median_ms,
                    "prepare_seconds": [b_seconds, p_seconds],
                    "onnx_max_abs_diff": diff,
                }
                row["speedup_over_flops"] = row["speedup"] / flops
                rows.append(row)
                print(
                    f"[{elapsed():6.0f}s] {name} r={ratio} {backend:11}: "
                    f"{row['baseline_ms']:.0f} -> {row['pruned_ms']:.0f} ms, "
                    f"{row['speedup']:.2f}x for {flops:.2f}x FLOPs "
                    f"({row['speedup_over_flops']:.2f})"
                    + (f", ONNX diff {diff:.1e}" if diff is not None else ""),
                    flush=True,
                )
    return {"rows": rows}


def _name(row: dict[str, Any]) -> str:
    n = row.get("round_to", 1)
    return row["model"] + (f" (channels kept in multiples of {n})" if n > 1 else "")


def to_markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Channel pruning on deployment backends",
        "",
        f"Command: `{report['command']}`  ",
        f"Date: {report['date']}; torch {report['torch']}, {report['threads']} threads; "
        f"input (3, {report['size']}, {report['size']}), random weights, L1 criterion; "
        f"total {report['seconds'] / 60:.1f} min (last run).",
        "",
        "Original and pruned model on the same backend, timed alternately in one run, medians. "
        "`compile`: torch.compile (Inductor, C++). `onnxruntime`: exported with torch.onnx, "
        "ONNX Runtime CPU provider (which folds BatchNorm itself). `-fused-cl`: both models "
        "with BatchNorm folded into the convolutions, in channels-last layout. Prepare = "
        "compile or export seconds (original, pruned), not "
        "in the latency. Target: speedup >= 0.8x the FLOPs reduction on at least one backend.",
        "",
        "| model | ratio | backend | batch | FLOPs reduction | original ms | pruned ms | "
        "speedup | speedup / FLOPs | prepare s | ONNX max diff |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in report["rows"]:
        diff = f"{r['onnx_max_abs_diff']:.1e}" if r["onnx_max_abs_diff"] is not None else ""
        prep = "/".join(f"{s:.0f}" for s in r["prepare_seconds"])
        lines.append(
            f"| {_name(r)} | {r['ratio']} | {r['backend']} | {r['batch']} | "
            f"{r['flops_reduction']:.2f}x | {r['baseline_ms']:.0f} | {r['pruned_ms']:.0f} | "
            f"{r['speedup']:.2f}x | {r['speedup_over_flops']:.2f} | {prep} | {diff} |"
        )
    best: dict[tuple[str, float], dict] = {}
    for r in report["rows"]:
        key = (_name(r), r["ratio"])
        if key not in best or r["speedup_over_flops"] > best[key]["speedup_over_flops"]:
            best[key] = r
    lines += ["", "Best backend per model and ratio:", ""]
    for (model, ratio), r in best.items():
        verdict = "met" if r["speedup_over_flops"] >= 0.8 else "MISSED"
        lines.append(
            f"- {model} r={ratio}: {r['backend']} {r['speedup']:.2f}x for "
            f"{r['flops_reduction']:.2f}x FLOPs ({r['speedup_over_flops']:.2f}): {verdict}"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--ratios", default="0.25,0.5,0.75")
    parser.add_argument(
        "--backends", default="eager,eager-fused-cl,compile,compile-fused-cl,onnxruntime",
        help="-fused-cl: both models with BatchNorm folded, in channels-last layout",
    )  # fmt: skip
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="timed blocks per model, at least")
    parser.add_argument("--min-run-time", type=float, default=0.1)
    parser.add_argument("--round-to", type=int, default=1, help="kept channels, multiple of N")
    parser.add_argument("--out", default="deploy", help="results/NAME.{json,md}")
    parser.add_argument(
        "--update", action="store_true",
        help="replace only the rerun models' rows in an existing results file",
    )  # fmt: skip
    args = parser.parse_args()
    report = {**provenance("deploy.py"), "size": args.size, **run(args)}
    earlier = read_report(args.out) if args.update else None
    if earlier is not None:
        rerun = set(args.models.split(","))
        kept = [r for r in earlier["rows"] if r["model"] not in rerun]
        report["rows"] = sorted(
            kept + report["rows"], key=lambda r: MODELS.index(r["model"])
            if r["model"] in MODELS else len(MODELS),
        )  # fmt: skip
        report["command"] = f"{earlier['command']}; then {report['command']}"
        report["date"] = f"{earlier['date']}; updated {report['date']}"
    report["seconds"] = elapsed()
    print(write_report(args.out, report, to_markdown))


if __name__ == "__main__":
    main()
