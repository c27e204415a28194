"""Fast convolution algorithms against PyTorch's convolution: Winograd F(2x2, 3x3) and FFT.

    python benchmarks/dynamic.py                        # about 5 minutes on 2 cores
    python benchmarks/dynamic.py --compile              # also each layer under torch.compile
    python benchmarks/dynamic.py --batch-sizes 1 --min-run-time 0.2

For each layer shape, ``nn.Conv2d`` (oneDNN on this CPU) and the same weights in
``WinogradConv2d`` (3x3 only) and ``FFTConv2d`` are timed alternately in one run (medians),
at each batch size, with all threads of the machine; the speedup is the conv's time over the
candidate's. FLOPs are counted by ``torch.utils.flop_counter`` for the conv and Winograd (its
transforms count as the small matrix products they are computed with) and by the layer's own
formula for FFT (the counter has none for FFTs); the largest output difference is on the same
random input. Writes results/dynamic.{json,md}.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import elapsed, provenance, write_report
from squeezer.analysis import count_flops, time_models
from squeezer.layers import FFTConv2d, WinogradConv2d

# (channels in, channels out, height = width, kernel)
SHAPES = [
    (16, 16, 28, 3),
    (64, 64, 14, 3),
    (64, 64, 56, 3),
    (128, 128, 28, 3),
    (32, 32, 28, 5),
    (32, 32, 28, 7),
    (16, 16, 64, 11),
]


def run(args: argparse.Namespace) -> dict[str, Any]:
    threads = torch.get_num_threads()
    rows = []
    for c, o, size, k in SHAPES:
        torch.manual_seed(0)
        conv = nn.Conv2d(c, o, k, padding=k // 2).eval()
        candidates: dict[str, nn.Module] = {"fft": FFTConv2d.from_conv(conv).eval()}
        if k == 3:
            candidates = {"winograd": WinogradConv2d.from_conv(conv).eval(), **candidates}
        x = torch.randn(1, c, size, size)
        with torch.no_grad():
            ref = conv(x)
            diffs = {n: float((m(x) - ref).abs().max()) for n, m in candidates.items()}
        flops = {"conv": count_flops(conv, x)[0]}
        for n, m in candidates.items():
            flops[n] = m.flops(size, size) if isinstance(m, FFTConv2d) else count_flops(m, x)[0]
        backends = ["eager", "compile"] if args.compile else ["eager"]
        for backend in backends:
            models = [conv, *candidates.values()]
            if backend == "compile":
                models = [torch.compile(m) for m in models]
            for batch in args.batch_sizes:
                times = time_models(models, (x,), batch, threads, min_run_time=args.min_run_time)
                base = times[0].median
                row = {
                    "shape": f"{c}->{o}, {size}x{size}, {k}x{k}",
                    "backend": backend,
                    "batch": batch,
                    "conv_ms": base * 1e3,
                    "flops_per_example": flops,
                    "max_abs_diff": diffs,
                }
                for (n, _), t in zip(candidates.items(), times[1:], strict=True):
                    row[f"{n}_ms"] = t.median * 1e3
                    row[f"{n}_speedup"] = base / t.median
                rows.append(row)
                parts = [f"{n} {row[f'{n}_speedup']:.2f}x" for n in candidates]
                print(f"{row['shape']:24s} {backend:7s} b{batch:<3d} conv {base * 1e3:8.3f} ms  "
                      + "  ".join(parts) + f"  [{elapsed():.0f} s]", flush=True)  # fmt: skip
    return {**provenance("dynamic.py"), "rows": rows}


def to_markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Fast convolution: Winograd F(2x2, 3x3) and FFT against PyTorch's convolution",
        "",
        f"`{report['command']}` ({report['date']}, torch {report['torch']}, "
        f"{report['threads']} threads, {report['backend']})",
        "",
        "Speedup = `nn.Conv2d`'s median time over the layer's, timed alternately in one run on "
        "the same input; same weights; padding k//2, stride 1. FLOPs per example: counted "
        "(conv, Winograd: its transforms count as the 4x4 matrix products that compute them) "
        "or the FFT layer's formula. Max diff: largest output difference from the conv.",
        "",
        "| layer | backend | batch | conv ms | Winograd ms | Winograd speedup | FFT ms | "
        "FFT speedup |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        w = (f"{r['winograd_ms']:.3f} | {r['winograd_speedup']:.2f}x" if "winograd_ms" in r
             else "- | -")  # fmt: skip
        lines.append(
            f"| {r['shape']} | {r['backend']} | {r['batch']} | {r['conv_ms']:.3f} | {w} | "
            f"{r['fft_ms']:.3f} | {r['fft_speedup']:.2f}x |"
        )
    lines += ["", "| layer | conv MFLOPs | Winograd MFLOPs | FFT MFLOPs | max diff Winograd | "
              "max diff FFT |", "|---|---|---|---|---|---|"]  # fmt: skip
    seen = set()
    for r in report["rows"]:
        if r["shape"] in seen:
            continue
        seen.add(r["shape"])
        f, d = r["flops_per_example"], r["max_abs_diff"]
        wf = f"{f['winograd'] / 1e6:.2f}" if "winograd" in f else "-"
        wd = f"{d['winograd']:.1e}" if "winograd" in d else "-"
        lines.append(f"| {r['shape']} | {f['conv'] / 1e6:.2f} | {wf} | {f['fft'] / 1e6:.2f} | "
                     f"{wd} | {d['fft']:.1e} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch-sizes", default="1,16",
                   type=lambda s: [int(v) for v in s.split(",")])  # fmt: skip
    p.add_argument("--min-run-time", type=float, default=0.5)
    p.add_argument("--compile", action="store_true", help="also time under torch.compile")
    args = p.parse_args()
    print(write_report("dynamic", run(args), to_markdown))


if __name__ == "__main__":
    main()
