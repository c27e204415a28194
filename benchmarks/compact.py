"""Compact filters as conversions of a trained network: VGG-11-BN on Fashion-MNIST (the
checkpoint the other benchmarks share) with its 3x3 convolutions refitted as depthwise-
separable pairs (multiplier 1 and 2) or as CReLU pairs, then distilled from the original.

    python benchmarks/compact.py                        # about an hour on 2 cores
    python benchmarks/compact.py --variants separable1 --epochs 1

Per variant: the conversion (least squares on 512 training images' layer inputs; see
``squeezer.compact``), the test error straight after it, after re-estimating BatchNorm
statistics on training images, and after each epoch of knowledge distillation from the
original model (KD, T = 4, alpha = 0.9, SGD lr 0.01, momentum 0.9, cosine schedule);
parameters and FLOPs (``torch.utils.flop_counter``; the PairedConv2d's per-channel scale is
elementwise and not counted); and the measured speedup of the whole model over the original,
timed alternately in one run (medians), batch 1 and 16, all threads, eager and ONNX Runtime
(the best backend of the deployment benchmark; it folds BatchNorm itself). Every variant
trains first and all timing comes after, so training never shares the CPU with a timing.

The first conv (1 input channel) stays out of the separable variants: a depthwise-separable
conv with one input channel and multiplier 1 makes all 64 filters one shape.

Writes results/compact.{json,md}.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import squeezer as sq
from harness import elapsed, on_backend, provenance, read_report, write_report
from squeezer.analysis import count_flops, time_models

VARIANTS = {
    "separable1": lambda: sq.compact.DepthwiseSeparable(exclude=("features.0",)),
    "separable2": lambda: sq.compact.DepthwiseSeparable(exclude=("features.0",), multiplier=2),
    "pairs": lambda: sq.compact.CReLUPairs(),
}


def convert(args: argparse.Namespace) -> dict[str, Any]:
    from harness import trained

    train, test = sq.data.load("fashion-mnist")
    base = trained("vgg11_bn", "fashion-mnist", train, epochs=10).eval()
    x = torch.zeros(1, *test.input_shape)
    base_err = 1.0 - sq.evaluate(base, test)["top1"]
    base_flops = count_flops(base, x)[0]
    base_params = sum(p.numel() for p in base.parameters())
    print(f"VGG-11-BN: error {base_err:.2%}, {base_flops:,} FLOPs, {base_params:,} parameters")
    batches = list(sq.data.loader(train, 64, shuffle=True, seed=0))[: args.fit_batches]
    rows, models = [], {}
    for name in args.variants:
        model = copy.deepcopy(base)
        t0 = elapsed()
        report = sq.convert_(model, VARIANTS[name](), x, data=batches)
        row: dict[str, Any] = {
            "variant": name,
            "method": report.method,
            "convert_seconds": elapsed() - t0,
            "fit_errors": {r.name: r.fit_error for r in report.converted},
            "params": sum(p.numel() for p in model.parameters()),
            "flops": count_flops(model, x)[0],
            "error_converted": 1.0 - sq.evaluate(model, test)["top1"],
        }
        sq.train.recalibrate_bn_(model, train)
        row["error_bn_recalibrated"] = 1.0 - sq.evaluate(model, test)["top1"]
        print(f"{name}: {base_flops / row['flops']:.2f}x fewer FLOPs, error "
              f"{row['error_converted']:.2%} converted, {row['error_bn_recalibrated']:.2%} with "
              f"BN re-estimated  [{elapsed():.0f} s]", flush=True)  # fmt: skip
        row["error_distilled"] = []
        torch.manual_seed(0)
        for epoch in range(args.epochs):
            sq.distill(model, base, train, sq.distillation.KD(),
                       sq.TrainConfig(epochs=1, lr=args.lr * (0.5 ** epoch), momentum=0.9,
                                      weight_decay=5e-4, schedule="cosine"),
                       verbose=True)  # fmt: skip
            model.eval()
            row["error_distilled"].append(1.0 - sq.evaluate(model, test)["top1"])
            print(f"{name}: distilled {epoch + 1} epoch(s): error "
                  f"{row['error_distilled'][-1]:.2%}  [{elapsed():.0f} s]", flush=True)  # fmt: skip
        rows.append(row)
        models[name] = model
    print(f"timing starts  [{elapsed():.0f} s]", flush=True)
    threads = torch.get_num_threads()
    for row in rows:
        model = models[row["variant"]]
        for backend in args.backends:
            try:
                ready, layout, _ = on_backend([base, model], backend, x, threads)
            except Exception as err:  # an export failure is a result
                row[f"{backend}_failed"] = f"{type(err).__name__}: {err}"[:300]
                continue
            for batch in args.batch_sizes:
                t = time_models(ready, (x,), batch, threads, min_run_time=args.min_run_time,
                                memory_format=layout)  # fmt: skip
                row[f"{backend}_b{batch}_ms"] = [t[0].median_ms, t[1].median_ms]
                row[f"{backend}_b{batch}_speedup"] = t[0].median_ms / t[1].median_ms
                print(f"{row['variant']} {backend} b{batch}: {t[0].median_ms:.2f} -> "
                      f"{t[1].median_ms:.2f} ms, {t[0].median_ms / t[1].median_ms:.2f}x  "
                      f"[{elapsed():.0f} s]", flush=True)  # fmt: skip
    return {
        "model": "vgg11_bn (fashion-mnist)",
        "error_before": base_err,
        "flops_before": base_flops,
        "params_before": base_params,
        "fit_examples": 64 * args.fit_batches,
        "epochs": args.epochs,
        "lr": args.lr,
        "threads": threads,
        "rows": rows,
    }


def to_markdown(report: dict[str, Any]) -> str:
    lines = ["# Compact filters: conversions of a trained network", ""]
    command = report.get("convert_command", report["command"])
    lines += [
        f"Command: `{command}`  ",
        f"Date: {report['date']}; torch {report['torch']}, {report['threads']} threads.",
    ]
    c = report["convert"]
    lines += [
        "",
        f"## {c['model']}: 3x3 convolutions converted, then distilled from the original",
        "",
        f"Original: test error {c['error_before']:.2%}, {c['params_before']:,} parameters, "
        f"{c['flops_before']:,} FLOPs. Fitted on {c['fit_examples']} training images; "
        f"distillation {c['epochs']} epoch(s) (KD T=4, alpha 0.9, lr {c['lr']:g} halved each "
        "epoch). Target: <= 1 point above the original's error.",
        "",
    ]
    backends = sorted({k.split("_b")[0] for r in c["rows"] for k in r if k.endswith("_speedup")})
    sizes = sorted({int(k.split("_b")[1].split("_")[0]) for r in c["rows"] for k in r
                    if k.endswith("_speedup")})  # fmt: skip
    timed = [f"{b} b{s}" for b in backends for s in sizes]
    lines.append("| variant | params | FLOPs | FLOPs reduction | error converted | "
                 "BN re-estimated | distilled | drop | " + " | ".join(timed) + " |")  # fmt: skip
    lines.append("| --- " * (8 + len(timed)) + "|")
    for r in c["rows"]:
        final = r["error_distilled"][-1] if r["error_distilled"] else r["error_bn_recalibrated"]
        speed = [f"{r[f'{b}_b{s}_speedup']:.2f}x" if f"{b}_b{s}_speedup" in r else "failed"
                 for b in backends for s in sizes]  # fmt: skip
        lines.append(
            f"| {r['method']} | {r['params']:,} | {r['flops']:,} | "
            f"{c['flops_before'] / r['flops']:.2f}x | {r['error_converted']:.2%} | "
            f"{r['error_bn_recalibrated']:.2%} | "
            + " / ".join(f"{e:.2%}" for e in r["error_distilled"])
            + f" | {100 * (final - c['error_before']):+.2f} | "
            + " | ".join(speed)
            + " |"
        )
    lines += ["", "Relative output error of each layer's least-squares fit:", ""]
    for r in c["rows"]:
        fits = ", ".join(f"{k} {v:.3f}" for k, v in r["fit_errors"].items())
        lines.append(f"- {r['variant']} ({r['convert_seconds']:.0f} s): {fits}")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", default=",".join(VARIANTS), type=lambda s: s.split(","),
                   help=f"conversions to run (default: {','.join(VARIANTS)})")  # fmt: skip
    p.add_argument("--epochs", type=int, default=2, help="distillation epochs per variant")
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--fit-batches", type=int, default=8, help="batches of 64 the fit reads")
    p.add_argument("--batch-sizes", default="1,16",
                   type=lambda s: [int(v) for v in s.split(",")])  # fmt: skip
    p.add_argument("--backends", default="eager,onnxruntime", type=lambda s: s.split(","))
    p.add_argument("--min-run-time", type=float, default=1.0)
    args = p.parse_args()
    report: dict[str, Any] = {**provenance("compact.py")}
    report["threads"] = torch.get_num_threads()
    report["convert"] = convert(args)
    report["convert_command"] = report["command"]
    earlier = read_report("compact") or {}
    for key, value in earlier.items():  # sections another run wrote
        report.setdefault(key, value)
    print(write_report("compact", report, to_markdown))


if __name__ == "__main__":
    main()
