"""Quantization: int8 accuracy per observer and speed on integer kernels; k-bit QAT, LSQ and
DoReFa against post-training quantization; Gupta's fixed point; file sizes per bit-width.

    SQUEEZER_DATA=../shared/data python benchmarks/quantization.py            # every part
    python benchmarks/quantization.py --parts speed --models resnet50 --update
    python benchmarks/quantization.py --parts kbit,fixed --update

Four parts (``--parts accuracy,speed,kbit,fixed``):

1. accuracy: ResNet-20 and VGG-11 (BN) trained on Fashion-MNIST (4 epochs, the checkpoints
   other benchmarks share), quantized to int8 on each backend with each observer (min-max,
   percentile, MSE, entropy), calibrated on 32 batches of 64 training images; top-1 on the
   whole test set against float32 (target: <= 0.5 point drop).
2. speed: the same two, and MobileNetV2 and ResNet-50 at 224 x 224 with random weights
   (calibrated on random inputs: speed only). Three models timed alternately in one run,
   medians: eager float32, float32 on the int8 model's backend (torch.compile for Inductor,
   ONNX Runtime), and the int8 model; batch 1 and 32, 2 threads (targets: >= 2.5x over eager
   float32 and >= 1.5x over float32 on the same backend).
3. kbit: the trained ResNet-20 at 8, 4 and 2 bits (weights and layer inputs; first and last
   layers at 8 bits, the model input left as it is): post-training quantization (QAT's
   quantizer, MSE-calibrated activation ranges on 8 batches, BatchNorm re-estimated), then
   QAT, LSQ and DoReFa each fine-tuned ``--qat-epochs`` from the float model (SGD, lr
   ``--qat-lr``, cosine). Top-1 on the whole test set, and the ``.sqz`` size with the weights
   packed at their width (target: QAT beats PTQ at 4 bits).
4. fixed: LeNet-5 trained from scratch on MNIST in fixed point (Gupta et al. 2015): 16-bit
   (14 fraction bits for weights, 10 for activations) and 12-bit (10 and 6), updates and
   activations rounded to nearest or stochastically; plain SGD, lr 0.01, batch 100, no momentum
   or weight decay (an update smaller than half a grid step is lost to round-to-nearest).

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
from squeezer.quantization import LSQ, OBSERVERS, QAT, DoReFa, FixedPoint, Int8

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


KBIT = {"ptq": QAT, "qat": QAT, "lsq": LSQ, "dorefa": DoReFa}


def _sqz_bytes(model: torch.nn.Module) -> int:
    with tempfile.TemporaryDirectory() as folder:
        return sq.save(model, Path(folder) / "m.sqz").stat().st_size


def part_kbit(args: argparse.Namespace) -> list[dict]:
    train, test = sq.data.load("fashion-mnist")
    base = trained("resnet20", "fashion-mnist", train, 4, log).eval()
    x = sq.data.example_inputs(test)
    top1 = sq.evaluate(base, test)["top1"]
    float_bytes = _sqz_bytes(base)
    log(f"resnet20: float32 top-1 {top1:.4f}, .sqz {float_bytes:,} bytes")
    pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
    subset = train.subset(pick[: args.qat_images])
    rows = []
    for bits in [int(b) for b in args.bits.split(",")]:
        for method in args.methods.split(","):
            model = copy.deepcopy(base)
            t0 = elapsed()
            sq.quantize_(model, KBIT[method](bits=bits), x, data=train)
            sq.train.recalibrate_bn_(model, train, max_batches=20)
            # right after = that method's post-training quantization; evaluated for PTQ only
            ptq = sq.evaluate(model, test)["top1"] if method == "ptq" else None
            row = {
                "model": "resnet20", "dataset": "fashion-mnist", "method": method,
                "bits": bits, "top1_float": top1, "top1_right_after": ptq,
                "epochs": 0 if method == "ptq" else args.qat_epochs,
                "train_images": 0 if method == "ptq" else len(subset),
                "lr": args.qat_lr,
            }  # fmt: skip
            if method != "ptq":
                sq.fit(model, subset, epochs=args.qat_epochs, lr=args.qat_lr, verbose=True)
            row["top1"] = sq.evaluate(model, test)["top1"]
            row["drop_points"] = 100 * (top1 - row["top1"])
            row["sqz_bytes"], row["float_sqz_bytes"] = _sqz_bytes(model), float_bytes
            row["seconds"] = elapsed() - t0
            rows.append(row)
            log(
                f"   {method} {bits} bits: final {row['top1']:.4f} "
                f"({-row['drop_points']:+.2f} points), .sqz {row['sqz_bytes']:,} bytes"
            )
    return rows


def part_fixed(args: argparse.Namespace) -> list[dict]:
    train, test = sq.data.load("mnist")
    x = sq.data.example_inputs(test)
    settings = [("float32", None, None, None)] + [
        (f"fixed{word}-{rounding}", word, frac, rounding)
        for word, frac in ((16, 14), (12, 10))
        for rounding in ("nearest", "stochastic")
    ]
    rows = []
    for label, word, frac, rounding in settings:
        torch.manual_seed(0)
        model = sq.models.create("lenet5")
        if word is not None:
            config = FixedPoint(bits=word, fraction_bits=frac, input_fraction_bits=frac - 4,
                                rounding=rounding, model_input=False)  # fmt: skip
            sq.quantize_(model, config, x)
        fit = sq.fit(
            model, train, val=test, epochs=args.fixed_epochs, lr=0.01, momentum=0.0,
            weight_decay=0.0, batch_size=100, schedule="constant", verbose=True,
        )  # fmt: skip
        top1 = sq.evaluate(model, test)["top1"]
        rows.append({
            "model": "lenet5", "dataset": "mnist", "setting": label, "word_bits": word,
            "fraction_bits": frac, "input_fraction_bits": None if frac is None else frac - 4,
            "rounding": rounding, "epochs": args.fixed_epochs, "test_error": 1 - top1,
            "val_top1_per_epoch": [h["val_top1"] for h in fit.history],
            "sqz_bytes": _sqz_bytes(model),
        })  # fmt: skip
        log(f"lenet5 {label}: test error {100 * (1 - top1):.2f}%")
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
            "int8. ONNX Runtime int8 is ONNX Runtime's QDQ quantizer with squeezer's ranges "
            "and 7-bit weights (see `Int8.reduce_range`). Targets: >= 2.5x over eager float32 "
            "and >= 1.5x over float32 on the same backend.",
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
    kbit = report.get("kbit", [])
    if kbit:
        ptq = {r["bits"]: r["top1"] for r in kbit if r["method"] == "ptq"}
        lines += [
            "## k-bit weights and activations on ResNet-20 Fashion-MNIST",
            "",
            "Weights and layer inputs at the bit-width, first and last layers at 8 bits; PTQ = "
            "QAT's quantizer calibrated on 8 batches with BatchNorm re-estimated, no training. "
            "QAT, LSQ and DoReFa start from the float model and fine-tune the stated epochs over "
            "the stated number of training images (a random subset where fewer than 60,000, "
            "to keep a full sweep near ten minutes on this machine's 2 cores; SGD, momentum "
            f"0.9, cosine from lr {kbit[-1].get('lr', 0.002)}). "
            "Size: the `.sqz` file with the weights packed at their width (Huffman coded).",
            "",
            "| bits | method | epochs x images | top-1 | drop (points) | vs PTQ "
            "(points) | .sqz bytes | smaller than float32 .sqz |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        order = {m: i for i, m in enumerate(KBIT)}
        for r in sorted(kbit, key=lambda r: (-r["bits"], order.get(r["method"], 9))):
            vs = 100 * (r["top1"] - ptq[r["bits"]]) if r["bits"] in ptq else float("nan")
            lines.append(
                f"| {r['bits']} | {r['method']} | {r['epochs']} x {r['train_images']:,} | "
                f"{100 * r['top1']:.2f}% | "
                f"{r['drop_points']:.2f} | {'' if r['method'] == 'ptq' else f'{vs:+.2f}'} | "
                f"{r['sqz_bytes']:,} | {r['float_sqz_bytes'] / r['sqz_bytes']:.2f}x |"
            )
        lines += [
            "",
            f"Float32 top-1 {100 * kbit[0]['top1_float']:.2f}%, float32 `.sqz` "
            f"{kbit[0]['float_sqz_bytes']:,} bytes.",
            "",
        ]
    fixed = report.get("fixed", [])
    if fixed:
        lines += [
            "## Fixed-point training (Gupta et al. 2015) on LeNet-5 MNIST, from scratch",
            "",
            "Weights stored in fixed point (every SGD update rounded back), layer inputs "
            "rounded likewise; plain SGD lr 0.01, batch 100.",
            "",
            "| setting | word bits | fraction bits (weights / inputs) | rounding | epochs | "
            "test error | val top-1 per epoch |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in fixed:
            fb = (
                ""
                if r["fraction_bits"] is None
                else f"{r['fraction_bits']} / {r['input_fraction_bits']}"
            )
            per = ", ".join(f"{100 * v:.2f}" for v in r["val_top1_per_epoch"])
            lines.append(
                f"| {r['setting']} | {r['word_bits'] or 32} | {fb} | {r['rounding'] or ''} | "
                f"{r['epochs']} | {100 * r['test_error']:.2f}% | {per} |"
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
    parser.add_argument("--bits", default="8,4,2", help="kbit: bit-widths")
    parser.add_argument("--methods", default="ptq,qat,lsq,dorefa", help="kbit: methods")
    parser.add_argument("--qat-epochs", type=int, default=1)
    parser.add_argument("--qat-lr", type=float, default=0.01)
    parser.add_argument(
        "--qat-images", type=int, default=12000, help="kbit: training images fine-tuned on"
    )
    parser.add_argument("--fixed-epochs", type=int, default=2)
    parser.add_argument("--update", action="store_true", help="keep other models' rows")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    report: dict[str, Any] = {**provenance("quantization.py")}
    parts = {"accuracy": part_accuracy, "speed": part_speed, "kbit": part_kbit,
             "fixed": part_fixed}  # fmt: skip
    earlier = read_report("quantization") if args.update else None
    rerun = set(args.models.split(","))
    for part in args.parts.split(","):
        report[part] = parts[part](args)
        if earlier:
            kept = [r for r in earlier.get(part, []) if r["model"] not in rerun]
            if part == "kbit":  # a rerun replaces the rows of its methods and bit-widths
                again = {(m, int(b)) for m in args.methods.split(",") for b in args.bits.split(",")}
                kept = [r for r in earlier.get(part, []) if (r["method"], r["bits"]) not in again]
            elif part == "fixed":
                kept = []
            elif part == "accuracy":  # replaces the rows of the observers and backends rerun
                again = {(m, b, o) for m in rerun for b in args.backends.split(",")
                         for o in args.observers.split(",")}  # fmt: skip
                kept = [r for r in earlier.get(part, [])
                        if (r["model"], r["backend"], r["observer"]) not in again]  # fmt: skip
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
