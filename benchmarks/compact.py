"""Compact filters on Fashion-MNIST, in three sections.

``convert``: a trained network converted. VGG-11-BN (the checkpoint the other benchmarks
share) with its 3x3 convolutions refitted as depthwise-separable pairs (multiplier 1 and 2)
or as CReLU pairs, then distilled from the original.
``families``: CReLU, multi-bias, p4 group convolutions, cyclic slicing/rolling/pooling and
doubly convolutional layers in a small CNN, each at the width that matches a plain CNN's
parameters, all trained alike from scratch.
``zoo``: the efficient architectures of the zoo (SqueezeNet, MobileNet v1 at width 1 and 0.5,
ShuffleNet, ShiftNet, EffNet) and their baselines (ResNet-20, VGG-11-BN), trained alike.

    python benchmarks/compact.py                        # convert: about an hour on 2 cores
    python benchmarks/compact.py --variants separable1 --epochs 1
    python benchmarks/compact.py --sections families --family-epochs 2
    python benchmarks/compact.py --sections families --timing-only   # latency of that run's nets
    python benchmarks/compact.py --sections zoo --zoo resnet20,shiftnet,effnet --zoo-epochs 3

Convert section:

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
import json
import re
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

import squeezer as sq
from harness import elapsed, on_backend, provenance, read_report, time_against_first, write_report
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


# ------------------------------------------------------------------ families
def _stage(layers: list[nn.Module], pool: bool) -> list[nn.Module]:
    return layers + ([nn.MaxPool2d(2)] if pool else [])


def _plain(w: int, classes: int) -> nn.Module:
    c = [w, 2 * w, 4 * w]
    return nn.Sequential(
        nn.Conv2d(1, c[0], 3, padding=1), nn.BatchNorm2d(c[0]), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(c[0], c[1], 3, padding=1), nn.BatchNorm2d(c[1]), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(c[1], c[2], 3, padding=1), nn.BatchNorm2d(c[2]), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c[2], classes),
    )  # fmt: skip


def _crelu(w: int, classes: int) -> nn.Module:
    from squeezer.layers.compact import CReLU

    c = [w, 2 * w, 4 * w]  # channels after CReLU; each conv computes half of them
    return nn.Sequential(
        nn.Conv2d(1, c[0] // 2, 3, padding=1), nn.BatchNorm2d(c[0] // 2), CReLU(), nn.MaxPool2d(2),
        nn.Conv2d(c[0], c[1] // 2, 3, padding=1), nn.BatchNorm2d(c[1] // 2), CReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(c[1], c[2] // 2, 3, padding=1), nn.BatchNorm2d(c[2] // 2), CReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c[2], classes),
    )  # fmt: skip


def _multibias(w: int, classes: int) -> nn.Module:
    from squeezer.layers.compact import MultiBias

    c = [w, 2 * w, 4 * w]  # channels after MultiBias(K=4); each conv computes a quarter
    return nn.Sequential(
        nn.Conv2d(1, c[0] // 4, 3, padding=1), nn.BatchNorm2d(c[0] // 4), MultiBias(c[0] // 4),
        nn.MaxPool2d(2),
        nn.Conv2d(c[0], c[1] // 4, 3, padding=1), nn.BatchNorm2d(c[1] // 4),
        MultiBias(c[1] // 4), nn.MaxPool2d(2),
        nn.Conv2d(c[1], c[2] // 4, 3, padding=1), nn.BatchNorm2d(c[2] // 4),
        MultiBias(c[2] // 4),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c[2], classes),
    )  # fmt: skip


class _P4Net(nn.Module):
    def __init__(self, w: int, classes: int) -> None:
        from squeezer.layers.compact import P4ConvP4, P4ConvZ2, P4Pool

        super().__init__()
        c = [w, 2 * w, 4 * w]
        self.lift = P4ConvZ2(1, c[0])
        self.bn1 = nn.BatchNorm3d(c[0])
        self.conv2 = P4ConvP4(c[0], c[1])
        self.bn2 = nn.BatchNorm3d(c[1])
        self.conv3 = P4ConvP4(c[1], c[2])
        self.bn3 = nn.BatchNorm3d(c[2])
        self.pool = P4Pool("max")
        self.fc = nn.Linear(c[2], classes)

    @staticmethod
    def _down(x: torch.Tensor) -> torch.Tensor:  # 2x2 max pooling of every orientation
        n, c, g, h, w = x.shape
        return F.max_pool2d(x.view(n, c * g, h, w), 2).view(n, c, g, h // 2, w // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._down(F.relu(self.bn1(self.lift(x))))
        x = self._down(F.relu(self.bn2(self.conv2(x))))
        x = F.relu(self.bn3(self.conv3(x)))
        return self.fc(self.pool(x).mean((2, 3)))


def _cyclic(w: int, classes: int) -> nn.Module:
    from squeezer.layers.compact import CyclicPool, CyclicRoll, CyclicSlice

    c = [w, 2 * w, 4 * w]
    return nn.Sequential(
        CyclicSlice(),
        nn.Conv2d(1, c[0], 3, padding=1), nn.BatchNorm2d(c[0]), nn.ReLU(), nn.MaxPool2d(2),
        CyclicRoll(),
        nn.Conv2d(4 * c[0], c[1], 3, padding=1), nn.BatchNorm2d(c[1]), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(c[1], c[2], 3, padding=1), nn.BatchNorm2d(c[2]), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), CyclicPool("mean"), nn.Linear(c[2], classes),
    )  # fmt: skip


def _doubly(w: int, classes: int) -> nn.Module:
    from squeezer.layers.compact import DoublyConv2d

    c = [w, 2 * w, 4 * w]  # 4 filters (the 2x2 patch grid of a 4x4 meta filter) per meta
    return nn.Sequential(
        nn.Conv2d(1, c[0], 3, padding=1), nn.BatchNorm2d(c[0]), nn.ReLU(), nn.MaxPool2d(2),
        DoublyConv2d(c[0], c[1] // 4, 3, 4), nn.BatchNorm2d(c[1]), nn.ReLU(), nn.MaxPool2d(2),
        DoublyConv2d(c[1], c[2] // 4, 3, 4), nn.BatchNorm2d(c[2]), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c[2], classes),
    )  # fmt: skip


FAMILIES = {
    "plain": _plain,
    "crelu": _crelu,
    "multibias": _multibias,
    "p4": _P4Net,
    "cyclic": _cyclic,
    "doubly": _doubly,
}


def _params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _matched(name: str, budget: int, classes: int) -> nn.Module:
    """The family's network whose width (a multiple of 4) brings its parameters closest to
    ``budget``."""
    best = None
    for w in range(4, 257, 4):
        m = FAMILIES[name](w, classes)
        gap = abs(_params(m) - budget)
        if best is None or gap < best[0]:
            best = (gap, w)
    assert best is not None
    torch.manual_seed(0)
    model = FAMILIES[name](best[1], classes)
    model.width = best[1]  # type: ignore[assignment]
    return model


def families(args: argparse.Namespace) -> dict[str, Any]:
    from harness import CHECKPOINTS

    train, test = sq.data.load("fashion-mnist")
    x = torch.zeros(1, *test.input_shape)
    torch.manual_seed(0)
    budget = _params(_plain(args.plain_width, train.num_classes))
    rows = []
    before = (read_report("compact") or {}).get("families", {})
    for name in args.families:
        model = _matched(name, budget, train.num_classes)
        path = CHECKPOINTS / f"compact-family-{name}.pt"
        row: dict[str, Any] = {"family": name, "width": model.width, "params": _params(model),
                               "flops": count_flops(model.eval(), x)[0]}  # fmt: skip
        if args.timing_only:  # latency does not depend on the weights' values
            old = next((r for r in before.get("rows", []) if r["family"] == name), None)
            if old is None:
                raise SystemExit(f"--timing-only: no earlier families row for {name}")
            row.update({k: old[k] for k in ("error", "seconds_per_epoch") if k in old})
            row["timed_untrained"] = True
            rows.append((row, model.eval()))
            continue
        if path.exists() and args.reuse:
            model.load_state_dict(torch.load(path, weights_only=True))
            before = (read_report("compact") or {}).get("families", {}).get("rows", [])
            row["seconds_per_epoch"] = next(
                (r.get("seconds_per_epoch") for r in before if r["family"] == name), None
            )
        else:
            torch.manual_seed(0)
            t0 = elapsed()
            sq.fit(model, train, epochs=args.family_epochs, lr=0.05, verbose=True)
            row["seconds_per_epoch"] = (elapsed() - t0) / args.family_epochs
            CHECKPOINTS.mkdir(parents=True, exist_ok=True)
            torch.save(model.state_dict(), path)
        model.eval()
        row["error"] = 1.0 - sq.evaluate(model, test)["top1"]
        print(f"{name}: width {row['width']}, {row['params']:,} params, {row['flops']:,} FLOPs, "
              f"error {row['error']:.2%}  [{elapsed():.0f} s]", flush=True)  # fmt: skip
        rows.append((row, model))
    if not args.skip_timing:
        for backend in args.backends:
            time_against_first([r for r, _ in rows], [m for _, m in rows], x, args.batch_sizes,
                               args.min_run_time, backend=backend)  # fmt: skip
    out = [row for row, _ in rows]
    epochs = before.get("epochs") if args.timing_only else args.family_epochs
    return {"dataset": "fashion-mnist", "epochs": epochs, "budget": budget, "rows": out}


def to_markdown(report: dict[str, Any]) -> str:
    lines = ["# Compact filters on Fashion-MNIST", ""]
    lines.append(f"Date: {report['date']}; torch {report['torch']}, {report['threads']} threads.")
    if "families" in report:
        lines += families_markdown(report)
    if "zoo" in report:
        lines += zoo_markdown(report)
    if "convert" not in report:
        return "\n".join(lines) + "\n"
    c = report["convert"]
    lines += [
        "",
        f"## {c['model']}: 3x3 convolutions converted, then distilled from the original",
        "",
        f"Command: `{report.get('convert_command', report['command'])}`  ",
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


def _timed_key(key: str) -> tuple[str, int]:
    """``"b16_ms"`` -> ``("eager", 16)``, ``"onnxruntime_b1_ms"`` -> ``("onnxruntime", 1)``."""
    stem = key.removesuffix("_ms")
    backend, _, size = (f"eager_{stem}" if stem.startswith("b") else stem).rpartition("_b")
    return backend, int(size)


def _timing(rows: list[dict[str, Any]], first: str) -> tuple[list[str], list[list[str]]]:
    """Column heads and per-row cells of the ``time_against_first`` timings in ``rows``:
    milliseconds and the ratio to the first row, per backend and batch size."""
    found = sorted({_timed_key(k) for r in rows for k in r if k.endswith("_ms")},
                   key=lambda bs: (bs[0] != "eager", bs))  # fmt: skip
    heads = [f"{b} b{s} ms (vs {first})" for b, s in found]
    cells = []
    for r in rows:
        row_cells = []
        for b, s in found:
            pre = "" if b == "eager" else f"{b}_"
            ratio = next((v for k, v in r.items() if k.startswith(f"{pre}b{s}_vs_")), None)
            if f"{pre}b{s}_ms" in r and ratio is not None:
                row_cells.append(f"{r[f'{pre}b{s}_ms']:.2f} ({ratio:.2f}x)")
            else:
                failed = f"{b}_failed" in r or f"{pre}b{s}_failed" in r
                row_cells.append("failed" if failed else "")
        cells.append(row_cells)
    return heads, cells


ZOO = {
    "resnet20": {},
    "vgg11_bn": {},
    "squeezenet": {},
    "mobilenet_v1": {},
    "mobilenet_v1-0.5": {"width_mult": 0.5},
    "shufflenet": {},
    "shiftnet": {},
    "effnet": {},
}


LOG_ROW = re.compile(r"^(\S+): ([\d,]+) params, ([\d,]+) FLOPs, error ([\d.]+)%  \[(\d+) s\]$")


def rows_from_log(path: str, epochs: int) -> list[dict[str, Any]]:
    """The rows a zoo training run printed (``name: P params, F FLOPs, error E%  [T s]``),
    for a run that died before writing its JSON; seconds per epoch from the elapsed times
    (they include each model's test evaluation)."""
    rows, before = [], 0.0
    for line in Path(path).read_text().replace("\r", "\n").splitlines():
        m = LOG_ROW.match(line.strip())
        if m:
            t = float(m[5])
            rows.append({"model": m[1], "params": int(m[2].replace(",", "")),
                         "flops": int(m[3].replace(",", "")), "error": float(m[4]) / 100,
                         "seconds_per_epoch": (t - before) / epochs})  # fmt: skip
            before = t
    if not rows:
        raise SystemExit(f"{path}: no zoo rows in it")
    return rows


def zoo(args: argparse.Namespace) -> dict[str, Any]:
    """Efficient architectures of the zoo and their baselines, all trained alike from scratch
    on Fashion-MNIST: parameters, FLOPs, test error, latency. Each model's row and weights are
    kept as it finishes (``results/compact.zoo.partial.json``, ``checkpoints/compact-zoo-*``),
    so ``--reuse`` picks a crashed run up where it stopped."""
    from harness import CHECKPOINTS, RESULTS

    train, test = sq.data.load("fashion-mnist")
    x = torch.zeros(1, *test.input_shape)
    shape = train.input_shape
    partial = RESULTS / "compact.zoo.partial.json"
    done = {r["model"]: r for r in (json.loads(partial.read_text())
                                    if partial.exists() and args.reuse else [])}  # fmt: skip
    logged = {r["model"]: r for r in rows_from_log(args.zoo_train_log, args.zoo_epochs)} \
        if args.zoo_train_log else {}  # fmt: skip
    rows, models = [], []
    for key in args.zoo:
        name = key.split("-")[0]
        torch.manual_seed(0)
        model = sq.models.create(name, num_classes=train.num_classes, in_channels=shape[0],
                                 input_size=shape[1], **ZOO.get(key, {}))  # fmt: skip
        path = CHECKPOINTS / f"compact-zoo-{key}.pt"
        if args.timing_only:  # latency does not depend on the weights' values
            if key not in logged and key not in done:
                raise SystemExit(f"--timing-only: no earlier row for {key} (--zoo-train-log)")
            row = {**logged.get(key, {}), **done.get(key, {}), "timed_untrained": True}
        elif key in done and path.exists():
            model.load_state_dict(torch.load(path, weights_only=True))
            row = done[key]
        else:
            t0 = elapsed()
            sq.fit(model, train, epochs=args.zoo_epochs, lr=args.zoo_lr,
                   warmup_epochs=min(0.5, args.zoo_epochs), verbose=True)  # fmt: skip
            model.eval()
            row = {"model": key, "params": _params(model), "flops": count_flops(model, x)[0],
                   "error": 1.0 - sq.evaluate(model, test)["top1"],
                   "seconds_per_epoch": (elapsed() - t0) / args.zoo_epochs}  # fmt: skip
            CHECKPOINTS.mkdir(parents=True, exist_ok=True)
            torch.save(model.state_dict(), path)
            done[key] = row
            partial.write_text(json.dumps(list(done.values()), indent=2))
        print(f"{key}: {row['params']:,} params, {row['flops']:,} FLOPs, error "
              f"{row['error']:.2%}  [{elapsed():.0f} s]", flush=True)  # fmt: skip
        rows.append(row)
        models.append(model.eval())
    for backend in args.backends:
        time_against_first(rows, models, x, args.batch_sizes, args.min_run_time,
                           backend=backend)  # fmt: skip
    return {"dataset": "fashion-mnist", "epochs": args.zoo_epochs, "lr": args.zoo_lr,
            "rows": rows, "train_log": args.zoo_train_log}  # fmt: skip


def zoo_markdown(report: dict[str, Any]) -> list[str]:
    z = report["zoo"]
    first = z["rows"][0]["model"]
    heads, cells = _timing(z["rows"], first)
    lines = [
        "",
        "## Efficient architectures trained from scratch against their baselines",
        "",
        f"Command: `{report.get('zoo_command', report['command'])}`  ",
        f"Fashion-MNIST (28 x 28), every model {z['epochs']} epoch(s) of SGD (lr "
        f"{z.get('lr', 0.05):g}, half an epoch of warm-up, cosine), seed 0; latency on each "
        f"backend with all threads, timed alternately with {first} (ratio > 1: faster than "
        f"{first}).",
        "",
        *(
            [
                "Errors and s/epoch come from the training run's log "
                f"(`{z['train_log']}`: that run crashed in its ONNX Runtime timing before writing "
                "its JSON, and its weights were not kept); latency was then taken with "
                "`--timing-only` on the same architectures freshly initialized (dense float "
                "latency does not depend on the weights' values). s/epoch: wall time while other "
                "work shared the 2 cores at times.",
                "",
            ]
            if z.get("train_log")
            else []
        ),
        "| model | params | FLOPs | test error | " + " | ".join(heads) + " | s/epoch |",
        "| --- " * (5 + len(heads)) + "|",
    ]
    for r, t in zip(z["rows"], cells, strict=True):
        lines.append(f"| {r['model']} | {r['params']:,} | {r['flops']:,} | {r['error']:.2%} | "
                     + " | ".join(t) + f" | {r['seconds_per_epoch']:.0f} |")  # fmt: skip
    return lines


def families_markdown(report: dict[str, Any]) -> list[str]:
    f = report["families"]
    lines = [
        "",
        "## Compact and transferred filters against a plain CNN of the same parameters",
        "",
        f"Command: `{report.get('families_command', report['command'])}`  ",
        f"Fashion-MNIST, three conv stages (widths w, 2w, 4w), BatchNorm, 2x2 max pooling, "
        f"global average pooling, one Linear; each family's w chosen to bring its "
        f"parameters closest to the plain CNN's {f['budget']:,}; {f['epochs']} epoch(s) of "
        "SGD (lr 0.05, cosine), seed 0. Latency: eager and ONNX Runtime, all threads, each model "
        "timed alternately with the plain CNN (ratio > 1: faster than plain).",
        "",
    ]
    heads, cells = _timing(f["rows"], "plain")
    if not heads:
        lines += ["No latency in this run (--skip-timing); s/epoch is the wall time of training, "
                  "which shared the 2 cores with another benchmark.", ""]  # fmt: skip
    elif any(r.get("timed_untrained") for r in f["rows"]):
        lines += ["Latency was taken with `--timing-only`: the same architectures freshly "
                  "initialized (dense float latency does not depend on the weights' values), "
                  "after the training run whose errors are shown; that run's s/epoch shared the "
                  "2 cores with another benchmark.", ""]  # fmt: skip
    lines.append("| family | width | params | FLOPs | test error | "
                 + "".join(f"{h} | " for h in heads) + "s/epoch |")  # fmt: skip
    lines.append("| --- " * (6 + len(heads)) + "|")
    for r, t in zip(f["rows"], cells, strict=True):
        spe = "" if r.get("seconds_per_epoch") is None else f"{r['seconds_per_epoch']:.0f}"
        timed = "".join(f"{v} | " for v in t)
        lines.append(f"| {r['family']} | {r['width']} | {r['params']:,} | {r['flops']:,} | "
                     f"{r['error']:.2%} | {timed}{spe} |")  # fmt: skip
    return lines


SECTIONS = ("convert", "families", "zoo")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sections", default="convert", type=lambda s: s.split(","),
                   help="convert (trained VGG-11 converted), families (filters trained "
                   "from scratch), zoo (efficient architectures); default: convert")  # fmt: skip
    p.add_argument("--variants", default=",".join(VARIANTS), type=lambda s: s.split(","),
                   help=f"conversions to run (default: {','.join(VARIANTS)})")  # fmt: skip
    p.add_argument("--epochs", type=int, default=2, help="distillation epochs per variant")
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--fit-batches", type=int, default=8, help="batches of 64 the fit reads")
    p.add_argument("--families", default=",".join(FAMILIES), type=lambda s: s.split(","),
                   help=f"filter families (default: {','.join(FAMILIES)}; the first is the "
                   "baseline of the timing)")  # fmt: skip
    p.add_argument("--family-epochs", type=int, default=3)
    p.add_argument("--zoo", default=",".join(ZOO), type=lambda s: s.split(","),
                   help=f"zoo models (default: {','.join(ZOO)}; the first is the timing's "
                   "reference)")  # fmt: skip
    p.add_argument("--zoo-epochs", type=int, default=3)
    p.add_argument("--zoo-lr", type=float, default=0.02,
                   help="zoo: peak learning rate for every model (0.05 leaves SqueezeNet, which "
                   "has no BatchNorm, dead at chance)")  # fmt: skip
    p.add_argument("--plain-width", type=int, default=32, help="w of the plain CNN")
    p.add_argument(
        "--reuse",
        action="store_true",
        help="families, zoo: load the weights an earlier run saved instead of training",
    )
    p.add_argument("--skip-timing", action="store_true", help="families: no latency")
    p.add_argument("--timing-only", action="store_true",
                   help="families, zoo: keep the earlier run's errors and time the "
                   "architectures freshly initialized")  # fmt: skip
    p.add_argument("--zoo-train-log", metavar="LOG",
                   help="zoo --timing-only: the rows a training run printed to LOG (for a run "
                   "that died before writing its JSON)")  # fmt: skip
    p.add_argument("--batch-sizes", default="1,16",
                   type=lambda s: [int(v) for v in s.split(",")])  # fmt: skip
    p.add_argument("--backends", default="eager,onnxruntime", type=lambda s: s.split(","))
    p.add_argument("--min-run-time", type=float, default=1.0)
    args = p.parse_args()
    report: dict[str, Any] = {**provenance("compact.py")}
    report["threads"] = torch.get_num_threads()
    makers = {"convert": convert, "families": families, "zoo": zoo}
    earlier = read_report("compact") or {}
    for section in SECTIONS:
        if section in args.sections:
            report[section] = makers[section](args)
            report[f"{section}_command"] = report["command"]
        elif section in earlier:
            report[section] = earlier[section]
            report[f"{section}_command"] = earlier.get(f"{section}_command", earlier["command"])
    print(write_report("compact", report, to_markdown))


if __name__ == "__main__":
    main()
