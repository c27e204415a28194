"""Int8 post-training quantization: accuracy per observer, and speed on integer kernels.

    SQUEEZER_DATA=../shared/data python benchmarks/quantization.py            # both parts
    python benchmarks/quantization.py --parts speed --models resnet50 --update

Two parts (``--parts accuracy,speed``):

1. accuracy: ResNet-20 and VGG-11 (BN) trained on Fashion-MNIST (4 epochs, the checkpoints
   other benchmarks share), quantized to int8 on each backend with each observer (min-max,
   percentile, MSE, entropy), calibrated on 32 batches of 64 training images; top-1 on the
   whole test set against float32 (target: <= 0.5 point drop).
2. speed: the same two, and MobileNetV2 and ResNet-50 at 224 x 224 with random weights
   (calibrated on random inputs: speed only). Three models timed alternately in one run,
   medians: eager float32, float32 on the int8 model's backend (torch.compile for Inductor,
   ONNX Runtime), and the int8 model; batch 1 and 32, 2 threads (targets: >= 2.5x over eager
   float32 and >= 1.5x over float32 on the same backend).

Writes results/quantization.{json,md}; ``--update`` keeps the rows of models not rerun.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import squeezer as sq
from harness import elapsed, provenance, read_report, trained, write_report
from squeezer.analysis import time_models
from squeezer.quantization import OBSERVERS, Int8

TRAINED = {"resnet20": "fashion-mnist", "vgg11_bn": "fashion-mnist"}
RANDOM = ("mobilenet_v2", "resnet50")
SAME = {"inductor": "compile", "onnxruntime": "onnxruntime"}


def log(msg: str) -> None:
    print(f"[{elapsed():6.0f}s] {msg}", file=sys.stderr, flush=True)


def _model(name: str, args: argparse.Namespace) -> tuple[torch.nn.Module, Any, Any, Any]:
    """(model, calibration data, test set or None, one example input)."""
    if name in TRAINED:
        train, test = sq.data.load(TRAINED[name])
        model = trained(name, TRAINED[name], train, 4, log).eval()
        return model, train, test, sq.data.example_inputs(test)
    torch.manual_seed(0)
    model = sq.models.create(name).eval()
    gen = torch.Generator().manual_seed(1)
    calib = [torch.randn(8, 3, args.size, args.size, generator=gen) for _ in range(4)]
    return model, calib, None, calib[0][:1]


def part_accuracy(args: argparse.Namespace) -> list[dict]:
    rows = []
    for name in [m for m in args.models.split(",") if m in TRAINED]:
        model, train, test, x = _model(name, args)
        top1 = sq.evaluate(model, test)["top1"]
        log(f"{name}: float32 top-1 {top1:.4f}")
        for backend in args.backends.split(","):
            for observer in args.observers.split(","):
                q = sq.quantize(model, Int8(backend=backend, observer=observer), x,
                                calibration=train)  # fmt: skip
                got = sq.evaluate(q, test)["top1"]
                rows.append({
                    "model": name, "dataset": TRAINED[name], "backend": backend,
                    "observer": observer, "top1_float": top1, "top1_int8": got,
                    "drop_points": 100 * (top1 - got), "max_abs_diff": q.report.max_abs_diff,
                    "calibration_examples": q.report.calibration_examples,
                    "quantize_seconds": q.report.seconds,
                })  # fmt: skip
                log(f"   {backend} {observer}: {got:.4f} ({100 * (got - top1):+.2f} points)")
    return rows


def part_speed(args: argparse.Namespace) -> list[dict]:
    rows = []
    torch.set_num_threads(args.threads)
    for name in args.models.split(","):
        model, calib, _, x = _model(name, args)
        eager = copy.deepcopy(model).eval()
        for backend in args.backends.split(","):
            q = sq.quantize(model, Int8(backend=backend), x, calibration=calib)
            same = sq.deploy.prepare(copy.deepcopy(model).eval(), SAME[backend], x, args.threads)
            with tempfile.TemporaryDirectory() as folder:
                suffix = ".onnx" if backend == "onnxruntime" else ".pt2"
                file_bytes = q.save(Path(folder) / f"m{suffix}").stat().st_size
            for batch in [int(b) for b in args.batch_sizes.split(",")]:
                lat = time_models(
                    [eager, same.module, q], x, batch, args.threads,
                    min_run_time=args.min_run_time, min_rounds=args.rounds,
                )  # fmt: skip
                e, s, i = (t.median_ms for t in lat)
                rows.append({
                    "model": name, "backend": backend, "batch": batch, "threads": args.threads,
                    "eager_float32_ms": e, "same_backend_float32_ms": s, "int8_ms": i,
                    "speedup_over_eager": e / i, "speedup_over_same_backend": s / i,
                    "float32_prepare_seconds": same.seconds,
                    "quantize_seconds": q.report.seconds,
                    "weight_bytes_float32": q.report.float_bytes,
                    "weight_bytes_int8": q.report.int8_bytes, "int8_file_bytes": file_bytes,
                })  # fmt: skip
                log(f"{name} {backend} batch {batch}: eager {e:.1f} ms, {SAME[backend]} "
                    f"{s:.1f} ms, int8 {i:.1f} ms: {e / i:.2f}x over eager, {s / i:.2f}x "
                    f"over {SAME[backend]}")  # fmt: skip
    return rows


def to_markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Int8 post-training quantization",
        "",
        f"Command: `{report['command']}`  ",
        f"Date: {report['date']}; torch {report['torch']}; {report['threads']} threads; "
        f"total {report['seconds'] / 60:.1f} min (last run).",
        "",
    ]
    acc = report.get("accuracy", [])
    if acc:
        lines += [
            "## Accuracy by observer (whole test set; calibration: 32 batches of 64 training "
            "images)",
            "",
            "| model | dataset | backend | observer | top-1 float32 | top-1 int8 | drop "
            "(points) | target <= 0.5 |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in acc:
            lines.append(
                f"| {r['model']} | {r['dataset']} | {r['backend']} | {r['observer']} | "
                f"{100 * r['top1_float']:.2f}% | {100 * r['top1_int8']:.2f}% | "
                f"{r['drop_points']:.2f} | {'met' if r['drop_points'] <= 0.5 else 'MISSED'} |"
            )
        lines.append("")
    speed = report.get("speed", [])
    if speed:
        lines += [
            "## Speed (MSE observer; medians, the three models alternating in one run)",
            "",
            "Same backend: torch.compile for Inductor int8, ONNX Runtime for ONNX Runtime "
            "int8. Targets: >= 2.5x over eager float32 and >= 1.5x over float32 on the same "
            "backend.",
            "",
            "| model | backend | batch | eager float32 ms | same-backend float32 ms | int8 ms | "
            "over eager | over same backend | weights float32 -> int8 bytes | int8 file bytes |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in speed:
            ok = r["speedup_over_eager"] >= 2.5 and r["speedup_over_same_backend"] >= 1.5
            lines.append(
                f"| {r['model']} | {r['backend']} | {r['batch']} | {r['eager_float32_ms']:.2f} | "
                f"{r['same_backend_float32_ms']:.2f} | {r['int8_ms']:.2f} | "
                f"{r['speedup_over_eager']:.2f}x | {r['speedup_over_same_backend']:.2f}x"
                f"{'' if ok else ' (MISSED)'} | {r['weight_bytes_float32']:,} -> "
                f"{r['weight_bytes_int8']:,} | {r['int8_file_bytes']:,} |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="accuracy,speed")
    parser.add_argument("--models", default=",".join([*TRAINED, *RANDOM]))
    parser.add_argument("--backends", default="inductor,onnxruntime")
    parser.add_argument("--observers", default=",".join(OBSERVERS))
    parser.add_argument("--batch-sizes", default="1,32")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--size", type=int, default=224, help="input size of the random models")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--min-run-time", type=float, default=0.5)
    parser.add_argument("--update", action="store_true", help="keep other models' rows")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    report: dict[str, Any] = {**provenance("quantization.py")}
    parts = {"accuracy": part_accuracy, "speed": part_speed}
    earlier = read_report("quantization") if args.update else None
    rerun = set(args.models.split(","))
    for part in args.parts.split(","):
        report[part] = parts[part](args)
        if earlier:
            kept = [r for r in earlier.get(part, []) if r["model"] not in rerun]
            report[part] = kept + report[part]
    if earlier:
        for part in parts:
            report.setdefault(part, earlier.get(part, []))
        report["command"] = f"{earlier['command']}; then {report['command']}"
        report["date"] = f"{earlier['date']}; updated {report['date']}"
    report["seconds"] = elapsed()
    print(write_report("quantization", report, to_markdown))


if __name__ == "__main__":
    main()
