"""Low-rank factorization and structured matrices: FLOPs, measured speed, accuracy.

Four parts (``--parts layers,stack,network,structured``):

1. layers: every conv layer of VGG-16 (224x224 input, random weights) replaced by CP,
   Tucker-2 and separable blocks at ranks chosen for 2x, 4x and 8x fewer FLOPs; batch 1 and
   32, per-layer FLOPs reduction against measured speedup (alternating medians), with the
   relative reconstruction error of the weights.
2. stack: four 256-channel 3x3 convs at quarter Tucker rank, NCHW and channels-last (target:
   measured speedup >= 0.4x the FLOPs reduction).
3. network: LeNet-5 on MNIST and VGG-11 (BN) on Fashion-MNIST, Tucker-2 on the convs and SVD
   on the fully connected layers, fine-tuned briefly: compression, measured speedup,
   accuracy before and after (target: >= 2x measured speedup at <= 1.0 point drop on
   Fashion-MNIST).
4. structured: LeNet-300-100 on MNIST with circulant, Fastfood, LDR and ACDC hidden layers,
   trained from scratch and fit-then-fine-tuned; and a timing scan of each against a dense
   layer for n = 2^8 .. 2^13.

Reproduce (about 40 minutes on 2 CPU cores):

    SQUEEZER_DATA=../shared/data python benchmarks/low_rank.py

Writes benchmarks/results/low_rank.{json,md}. ``--parts stack --update`` reruns one part and
keeps the others in the existing file. ``--parts network --network-models vgg11_bn
--conv-methods tucker --rank-round-to 8 --update`` adds VGG-11 rows with every rank a multiple
of 8 beside the unrounded ones.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from torch import nn

import squeezer as sq
from squeezer.analysis import count_flops, time_models
from squeezer.factorization import CP, SVD, Separable, Tucker, factorize_, parse_rank
from squeezer.layers import ACDCLinear, CirculantLinear, FastfoodLinear, LDRLinear

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import elapsed, on_backend, provenance, read_report, trained, write_report

TARGETS = ("flops:2", "flops:4", "flops:8")
STRUCTURED = {
    "circulant": lambda i, o: CirculantLinear(i, o),
    "fastfood": lambda i, o: FastfoodLinear(i, o),
    "ldr": lambda i, o: LDRLinear(i, o, rank=4),
    "acdc": lambda i, o: ACDCLinear(i, o, depth=4),
}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- part 1: layers
def vgg16_convs(size: int) -> list[tuple[str, nn.Conv2d, torch.Tensor]]:
    torch.manual_seed(0)
    model = sq.models.create("vgg16_bn_imagenet", num_classes=1000, input_size=size).eval()
    x = torch.randn(1, 3, size, size)
    shapes: dict[str, torch.Size] = {}

    def keep(_m: nn.Module, args: tuple, name: str) -> None:
        shapes.setdefault(name, args[0].shape)

    hooks = [
        m.register_forward_pre_hook(lambda _m, a, n=n: keep(_m, a, n))
        for n, m in model.named_modules()
        if isinstance(m, nn.Conv2d)
    ]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return [
        (n, m, torch.randn(1, *shapes[n][1:]))
        for n, m in model.named_modules()
        if isinstance(m, nn.Conv2d)
    ]


def part_layers(args: argparse.Namespace) -> dict:
    methods = {"cp": CP(n_iter_max=args.cp_iters), "tucker": Tucker(), "separable": Separable()}
    rows = []
    for name, conv, x in vgg16_convs(args.size):
        log(f"== VGG-16 {name}: {conv.in_channels} -> {conv.out_channels}, {tuple(x.shape[2:])}")
        base_flops = count_flops(conv, x)[0]
        variants, meta = [], []
        for method, config in methods.items():
            for target in TARGETS:
                if method == "cp" and conv.in_channels == 3:
                    continue  # the first layer is too small for CP to pay (3 input channels)
                t0 = time.perf_counter()
                c = config.convert(conv, parse_rank(target))
                seconds = time.perf_counter() - t0
                w = conv.weight.detach().double()
                err = float((c.approx_weight.double().reshape(w.shape) - w).norm() / w.norm())
                variants.append(c.block.eval())
                meta.append(
                    {
                        "layer": name,
                        "method": method,
                        "target": target,
                        "ranks": c.ranks,
                        "weight_error": err,
                        "decompose_s": seconds,
                        "flops_reduction": base_flops / count_flops(c.block, x)[0],
                        "params_reduction": conv.weight.numel()
                        / sum(p.numel() for p in c.block.parameters() if p.dim() > 1),
                    }
                )
        for batch in args.batch_sizes:
            lat = time_models(
                [conv, *variants], x, batch, args.threads, min_run_time=0.0, min_rounds=args.rounds
            )
            for m, latency in zip(meta, lat[1:], strict=True):
                rows.append(
                    {
                        **m,
                        "batch_size": batch,
                        "baseline_ms": lat[0].median_ms,
                        "ms": latency.median_ms,
                        "speedup": lat[0].median_ms / latency.median_ms,
                    }
                )
            log(
                f"   batch {batch}: "
                + ", ".join(
                    f"{r['method']}@{r['target']} {r['speedup']:.2f}x/{r['flops_reduction']:.2f}x"
                    for r in rows[-len(meta) :]
                )
            )
    return {"rows": rows, "size": args.size, "cp_iters": args.cp_iters}


def part_stack(args: argparse.Namespace) -> dict:
    """The issue's reference: four 256-channel 3x3 convs (56x56) at quarter Tucker rank."""
    torch.manual_seed(0)
    stack = nn.Sequential(
        *(m for _ in range(4) for m in (nn.Conv2d(256, 256, 3, padding=1), nn.ReLU()))
    ).eval()
    x = torch.randn(1, 256, 56, 56)
    small = copy.deepcopy(stack)
    with warnings.catch_warnings():  # a bare Sequential has no architecture record to update
        warnings.simplefilter("ignore", UserWarning)
        report = factorize_(small, Tucker(rank=0.25), x)
    fr = count_flops(stack, x)[0] / count_flops(small, x)[0]
    rows = []
    for backend in args.backends:
        for variant in ("", "-cl") if backend != "onnxruntime" else ("",):
            layout = torch.channels_last if variant else torch.contiguous_format
            models = [copy.deepcopy(m).to(memory_format=layout) for m in (stack, small)]
            ready = [sq.deploy.prepare(m, backend, x.contiguous(memory_format=layout),
                                       args.threads) for m in models]  # fmt: skip
            for batch in args.batch_sizes:
                a, b = time_models(
                    [r.module for r in ready], x, batch, args.threads, min_run_time=0.0,
                    min_rounds=2 * args.rounds, memory_format=layout,
                )  # fmt: skip
                speedup = a.median_ms / b.median_ms
                rows.append(
                    {
                        "backend": backend,
                        "layout": "channels-last" if variant else "NCHW",
                        "batch_size": batch,
                        "flops_reduction": fr,
                        "baseline_ms": a.median_ms,
                        "ms": b.median_ms,
                        "speedup": speedup,
                        "ranks": report.converted[0].ranks,
                        "prepare_seconds": [r.seconds for r in ready],
                        "target_met": speedup >= 0.4 * fr,
                        "target_issue11_met": speedup >= 0.6 * fr,
                    }
                )
                log(f"== stack {backend}{variant} batch {batch}: FLOPs {fr:.2f}x, measured "
                    f"{speedup:.2f}x ({speedup / fr:.2f})")  # fmt: skip
    return {"rows": rows}


# ---------------------------------------------------------------------------- part 2: network
def part_network(args: argparse.Namespace) -> dict:
    rows = []
    conv_methods = {"tucker": Tucker, "separable": Separable, "cp": CP}
    cases = [
        ("lenet5", "mnist", 10, args.lenet_rank, method) for method in args.conv_methods.split(",")
    ] + [
        ("vgg11_bn", "fashion-mnist", 4, args.vgg_rank, method)
        for method in args.conv_methods.split(",")
    ]
    models = set(args.network_models.split(","))
    cases = [c for c in cases if c[0] in models]
    for name, dataset, epochs, rank, method in cases:
        log(f"== {name} on {dataset}, {method} on the convs, ranks in multiples of "
            f"{args.rank_round_to}")  # fmt: skip
        train, test = sq.data.load(dataset)
        base = trained(name, dataset, train, epochs, log).eval()
        x = sq.data.example_inputs(test)
        top1 = sq.evaluate(base, test)["top1"]
        small = copy.deepcopy(base)
        loader = sq.data.loader(train.without_augment(), 128, shuffle=True, seed=0)
        calibration = [b for _, b in zip(range(8), loader, strict=False)]
        t0 = time.perf_counter()
        n = args.rank_round_to
        conv_report = factorize_(
            small, conv_methods[method](rank=rank, round_to=n), x, calibration=calibration
        )
        fc_report = factorize_(small, SVD(rank=rank, exclude=args.keep_fc, round_to=n), x)
        seconds = time.perf_counter() - t0
        right_after = sq.evaluate(small, test)["top1"]
        sq.fit(small, train, epochs=args.finetune_epochs, lr=0.01, verbose=True)
        after = sq.evaluate(small, test)["top1"]
        flops = [count_flops(m, x)[0] for m in (base, small)]
        params = [sum(p.numel() for p in m.parameters()) for m in (base, small)]
        speed = {}
        for backend in args.network_backends:
            models, layout, prep = on_backend([base, small], backend, x, args.threads)
            a, b = time_models(
                models, x, 32, args.threads, min_run_time=1.0, min_rounds=7, memory_format=layout
            )
            speed[backend] = {"baseline_ms": a.median_ms, "ms": b.median_ms,
                              "speedup": a.median_ms / b.median_ms,
                              "prepare_seconds": prep}  # fmt: skip
        exported = {}
        if args.export_check:
            with tempfile.TemporaryDirectory() as folder:
                for which, m in (("original", base), ("factorized", small)):
                    r = sq.export(m, x, Path(folder) / f"{which}.onnx", check=test)
                    exported[which] = {
                        "max_abs_diff": r.max_abs_diff,
                        "top1_agreement": r.top1_agreement,
                        "top1_pytorch": r.top1_pytorch,
                        "top1_onnx": r.top1_onnx,
                        "examples": r.check_examples,
                    }
                    log(f"   export {which}: {r.format()}")
        row = {
            "model": name,
            "dataset": dataset,
            "conv_method": method,
            "rank": rank,
            "round_to": n,
            "top1_before": top1,
            "top1_factorized": right_after,
            "top1_after": after,
            "drop_points": 100 * (top1 - after),
            "params": params[1],
            "baseline_params": params[0],
            "compression": params[0] / params[1],
            "flops": flops[1],
            "baseline_flops": flops[0],
            "flops_reduction": flops[0] / flops[1],
            "speed_b32": speed,
            "export_check": exported,
            "factorize_s": seconds,
            "layers": conv_report.to_dict()["layers"] + fc_report.to_dict()["layers"],
        }
        rows.append(row)
        log(
            f"   {100 * top1:.2f}% -> {100 * right_after:.2f}% -> {100 * after:.2f}%, "
            f"{row['compression']:.2f}x params, {row['flops_reduction']:.2f}x FLOPs, "
            + ", ".join(f"{k} {v['speedup']:.2f}x" for k, v in speed.items())
        )
    return {"rows": rows, "finetune_epochs": args.finetune_epochs}


def _rounded(row: dict) -> str:
    n = row.get("round_to", 1)
    return f", ranks x{n}" if n > 1 else ""


def _network_key(row: dict) -> tuple:
    return (row["model"], row.get("conv_method"), row["rank"], row.get("round_to", 1))


# ------------------------------------------------------------------------- part 3: structured
def _lenet300_with(kind: str, base: nn.Module | None) -> tuple[nn.Module, dict[str, float]]:
    """LeNet-300-100 with structured hidden layers, random or fit to ``base``'s (and the
    relative weight error of each fit)."""
    torch.manual_seed(0)
    model = sq.models.create("lenet300")
    errors = {}
    if base is not None:
        model.load_state_dict(base.state_dict())
    for name in ("fc1", "fc2"):
        old = getattr(model, name)
        if base is None:
            new = STRUCTURED[kind](old.in_features, old.out_features)
        else:
            proto = STRUCTURED[kind](old.in_features, old.out_features)
            new = type(proto).from_linear(old, **_kwargs(proto))
            errors[name] = new.relative_error(old.weight.detach())
        setattr(model, name, new)
    return model, errors


def _fit_or_nan(model: nn.Module, train, epochs: int, lr: float) -> float | None:
    try:
        # clipping the gradient norm at 1 keeps the bilinear LDR layers from diverging
        sq.fit(model, train, epochs=epochs, lr=lr, grad_clip=1.0, verbose=True)
    except FloatingPointError as err:
        log(f"   diverged: {err}")
        return None
    return lr


def _kwargs(layer: nn.Module) -> dict:
    args = layer.spec_args()  # type: ignore[operator]
    return {k: v for k, v in args.items() if k not in ("in_features", "out_features", "bias")}


def part_structured(args: argparse.Namespace) -> dict:
    train, test = sq.data.load("mnist")
    base = trained("lenet300", "mnist", train, 10, log).eval()
    base_err = 1 - sq.evaluate(base, test)["top1"]
    base_params = sum(p.numel() for p in base.parameters())
    rows = [
        {
            "layer": "dense",
            "params": base_params,
            "error_scratch": None,
            "error_fit": base_err,
            "error_fit_finetuned": None,
            "fit_weight_error": {},
        }
    ]
    for kind in STRUCTURED:
        log(f"== LeNet-300-100 with {kind} hidden layers")
        scratch, _ = _lenet300_with(kind, None)
        ok = _fit_or_nan(scratch, train, args.scratch_epochs, args.scratch_lr)
        fit, weight_errors = _lenet300_with(kind, base)
        fit_err = 1 - sq.evaluate(fit, test)["top1"]
        ok_fit = _fit_or_nan(fit, train, args.fit_epochs, 0.01)
        rows.append(
            {
                "layer": kind,
                "params": sum(p.numel() for p in scratch.parameters()),
                "error_scratch": None if ok is None else 1 - sq.evaluate(scratch, test)["top1"],
                "error_fit": fit_err,
                "error_fit_finetuned": None
                if ok_fit is None
                else 1 - sq.evaluate(fit, test)["top1"],
                "fit_weight_error": weight_errors,
            }
        )
        log(f"   {rows[-1]}")
    scan = []
    for p in range(8, 14):
        n = 1 << p
        torch.manual_seed(0)
        layers = [nn.Linear(n, n)] + [STRUCTURED[k](n, n) for k in STRUCTURED]
        lat = time_models(
            layers, torch.randn(1, n), args.scan_batch, args.threads, min_run_time=0.0,
            min_rounds=args.rounds * 3,
        )  # fmt: skip
        scan.append(
            {"n": n, "dense_ms": lat[0].median_ms}
            | {f"{k}_ms": latency.median_ms for k, latency in zip(STRUCTURED, lat[1:], strict=True)}
        )
        log(f"   n={n}: " + ", ".join(f"{k} {v:.3f}" for k, v in scan[-1].items() if k != "n"))
    return {"rows": rows, "scan": scan, "scratch_epochs": args.scratch_epochs,
            "scratch_lr": args.scratch_lr, "fit_epochs": args.fit_epochs,
            "scan_batch": args.scan_batch}  # fmt: skip


# ----------------------------------------------------------------------------------- report
def to_markdown(report: dict) -> str:
    lines = [
        "# Low-rank factorization and structured matrices",
        "",
        f"Command: `{report['command']}`  ",
        f"Date: {report['date']}; {report['backend']}; {report['threads']} threads; total "
        f"running time {report['total_seconds'] / 60:.1f} min.",
        "",
    ]
    if "layers" in report:
        p = report["layers"]
        lines += [
            f"## VGG-16 conv layers one by one ({p['size']}x{p['size']} input, random weights)",
            "",
            "Ranks chosen per layer for 2x, 4x and 8x fewer FLOPs (`flops:F`). Speedup = "
            "original layer median / factorized block median, timed alternately. Weight error "
            "= relative Frobenius error of the kernel (random weights have no low-rank "
            f"structure, so it is high). CP: squeezer's ALS (PyTorch contractions, TensorLy-style "
            f"SVD initialization), {p['cp_iters']} iterations; CP skips the first layer (3 "
            "input channels).",
            "",
        ]
        totals: dict[tuple, list[float]] = {}
        for r in p["rows"]:
            t = totals.setdefault((r["method"], r["target"], r["batch_size"]), [0.0, 0.0, 0])
            t[0], t[1], t[2] = t[0] + r["baseline_ms"], t[1] + r["ms"], t[2] + 1
        lines += [
            "Summed over the layers (each layer's FLOPs fall by at least the target factor; the "
            "first layer's by more, as its small ranks round):",
            "",
            "| method | target | batch | layers | original ms | factorized ms | speedup |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for (method, target, batch), (a, b, n) in sorted(totals.items()):
            lines.append(
                f"| {method} | {target} | {batch} | {n} | {a:.1f} | {b:.1f} | {a / b:.2f}x |"
            )
        lines += [
            "",
            "Per layer:",
            "",
            "| layer | method | target | ranks | batch | FLOPs reduction | measured speedup "
            "| speedup / FLOPs | params reduction | weight error |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in p["rows"]:
            lines.append(
                f"| {r['layer']} | {r['method']} | {r['target']} | "
                f"{'x'.join(map(str, r['ranks']))} | {r['batch_size']} | "
                f"{r['flops_reduction']:.2f}x | {r['speedup']:.2f}x | "
                f"{r['speedup'] / r['flops_reduction']:.2f} | {r['params_reduction']:.2f}x | "
                f"{r['weight_error']:.3f} |"
            )
        lines.append("")
    if "stack" in report:
        lines += [
            "## Four 256-channel 3x3 convs (56x56) at quarter Tucker rank",
            "",
            "Both models on the same backend and in the same layout, inputs too, timed "
            "alternately. Targets: speedup >= 0.4x the FLOPs reduction (eager, issue 5); >= 0.6x "
            "at batch 32 on the best backend (issue 11). Prepare = compile or export seconds "
            "(original, Tucker), not in the latency.",
            "",
            "| backend | layout | batch | ranks | FLOPs reduction | baseline ms | Tucker ms | "
            "measured speedup | speedup / FLOPs | prepare s |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        rows = report["stack"]["rows"] if isinstance(report["stack"], dict) else []
        for r in rows:
            prep = "/".join(f"{v:.0f}" for v in r.get("prepare_seconds", [0, 0]))
            lines.append(
                f"| {r.get('backend', 'eager')} | {r['layout']} | {r['batch_size']} | "
                f"{'x'.join(map(str, r['ranks']))} | {r['flops_reduction']:.2f}x | "
                f"{r['baseline_ms']:.1f} | {r['ms']:.1f} | {r['speedup']:.2f}x | "
                f"{r['speedup'] / r['flops_reduction']:.2f} | {prep} |"
            )
        for batch in sorted({r["batch_size"] for r in rows}):
            best = max((r for r in rows if r["batch_size"] == batch), key=lambda r: r["speedup"])
            ratio = best["speedup"] / best["flops_reduction"]
            lines.append(
                f"\nBest at batch {batch}: {best.get('backend', 'eager')} {best['layout']}, "
                f"{best['speedup']:.2f}x for {best['flops_reduction']:.2f}x FLOPs ({ratio:.2f}): "
                + ("issue 11 target (0.6) met" if ratio >= 0.6 else "issue 11 target (0.6) MISSED")
                if batch == 32
                else f"\nBest at batch {batch}: {best.get('backend', 'eager')} {best['layout']}, "
                f"{best['speedup']:.2f}x ({ratio:.2f})"
            )
        lines.append("")
    if "network" in report:
        p = report["network"]
        lines += [
            "## Whole networks: Tucker-2 or separable on convs, SVD on fully connected layers",
            "",
            "Conv ranks with asymmetric reconstruction (Zhang 2016) on 8 batches of 128 "
            f"training images, then {p['finetune_epochs']} fine-tuning epoch(s) at lr 0.01. "
            "Speedup at batch 32, alternating medians, both models on the same backend; "
            "`-fused-cl`: both after BatchNorm folding, in channels-last layout. Export: both "
            "models written to ONNX and run in ONNX Runtime on the whole test set.",
            "",
        ]
        backends = list(p["rows"][0]["speed_b32"]) if p["rows"] else []
        lines += [
            "| model | dataset | convs | rank | top-1 before | right after | after fine-tuning "
            "| drop (points) | compression | FLOPs reduction | "
            + " | ".join(f"speedup {b}" for b in backends)
            + " |",
            "| " + " | ".join("---" for _ in range(10 + len(backends))) + " |",
        ]
        for r in p["rows"]:
            s = r["speed_b32"]
            lines.append(
                f"| {r['model']} | {r['dataset']} | {r.get('conv_method', 'tucker')} | "
                f"{r['rank']}{_rounded(r)} | {100 * r['top1_before']:.2f}% "
                f"| {100 * r['top1_factorized']:.2f}% | {100 * r['top1_after']:.2f}% | "
                f"{r['drop_points']:.2f} | {r['compression']:.2f}x | "
                f"{r['flops_reduction']:.2f}x | "
                + " | ".join(f"{s[b]['speedup']:.2f}x" for b in backends if b in s)
                + " |"
            )
        checked = [r for r in p["rows"] if r.get("export_check")]
        if checked:
            lines += [
                "",
                "ONNX export check (whole test set):",
                "",
                "| model | convs | model | max abs diff | top-1 agreement | top-1 PyTorch | "
                "top-1 ONNX Runtime |",
                "| --- | --- | --- | --- | --- | --- | --- |",
            ]
            for r in checked:
                for which, e in r["export_check"].items():
                    lines.append(
                        f"| {r['model']} | {r.get('conv_method', 'tucker')}{_rounded(r)} | "
                        f"{which} | "
                        f"{e['max_abs_diff']:.1e} | {100 * e['top1_agreement']:.2f}% | "
                        f"{100 * e['top1_pytorch']:.2f}% | {100 * e['top1_onnx']:.2f}% |"
                    )
        lines.append("")
    if "structured" in report:
        p = report["structured"]
        lines += [
            "## Structured hidden layers in LeNet-300-100 (MNIST)",
            "",
            f"From scratch: {p['scratch_epochs']} epochs, SGD at lr {p.get('scratch_lr', 0.05)} "
            "(cosine), gradient norm clipped at 1. Fit: each hidden layer fit to the trained "
            "dense layer by least squares (relative weight error shown), then "
            f"{p['fit_epochs']} fine-tuning epoch(s) at lr "
            "0.01. The output layer stays dense. Blank: training diverged.",
            "",
            "| hidden layers | params | test error, from scratch | fit weight error fc1 / fc2 "
            "| test error, fit | fit + fine-tuned |",
            "| --- | --- | --- | --- | --- | --- |",
        ]

        def pct(v: float | None) -> str:
            return "" if v is None else f"{100 * v:.2f}%"

        for r in p["rows"]:
            we = r.get("fit_weight_error") or {}
            werr = " / ".join(f"{we[k]:.3f}" for k in ("fc1", "fc2") if k in we)
            lines.append(
                f"| {r['layer']} | {r['params']:,} | {pct(r['error_scratch'])} | {werr} | "
                f"{pct(r['error_fit'])} | {pct(r['error_fit_finetuned'])} |"
            )
        keys = [k for k in p["scan"][0] if k != "n"]
        lines += [
            "",
            f"Timing scan, n x n layers, batch {p['scan_batch']} (ms, medians):",
            "",
            "| n | " + " | ".join(k.removesuffix("_ms") for k in keys) + " |",
            "| --- | " + " | ".join("---" for _ in keys) + " |",
        ]
        for r in p["scan"]:
            lines.append(f"| {r['n']} | " + " | ".join(f"{r[k]:.3f}" for k in keys) + " |")
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="layers,stack,network,structured")
    parser.add_argument(
        "--update",
        action="store_true",
        help="replace only the parts run in an existing results file, keeping the others",
    )
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-sizes", default="1,32")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cp-iters", type=int, default=25)
    parser.add_argument("--conv-methods", default="tucker,separable")
    parser.add_argument("--lenet-rank", default="flops:3")
    parser.add_argument("--vgg-rank", default="flops:3")
    parser.add_argument(
        "--keep-fc", default="fc2,classifier.1", help="output layers left dense (patterns)"
    )
    parser.add_argument(
        "--network-models", default="lenet5,vgg11_bn", help="network part: which models"
    )
    parser.add_argument(
        "--rank-round-to", type=int, default=1,
        help="network part: ranks in multiples of N (round_to); with --update its rows are "
        "added beside those of other roundings",
    )  # fmt: skip
    parser.add_argument("--finetune-epochs", type=int, default=2)
    parser.add_argument("--scratch-epochs", type=int, default=4)
    parser.add_argument("--scratch-lr", type=float, default=0.02)
    parser.add_argument("--fit-epochs", type=int, default=2)
    parser.add_argument("--scan-batch", type=int, default=32)
    parser.add_argument(
        "--backends", default="eager,compile,onnxruntime", help="for the stack part"
    )
    parser.add_argument(
        "--network-backends",
        default="eager,eager-fused-cl,compile,compile-fused-cl,onnxruntime",
        help="for the network part (-fused-cl: BatchNorm folded, channels-last)",
    )
    parser.add_argument(
        "--export-check", action=argparse.BooleanOptionalAction, default=True,
        help="network part: export both models to ONNX and compare on the whole test set",
    )  # fmt: skip
    parser.add_argument("--out-name", default="low_rank")
    args = parser.parse_args()
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    args.backends = args.backends.split(",")
    args.network_backends = args.network_backends.split(",")
    args.keep_fc = tuple(s for s in args.keep_fc.split(",") if s)
    fresh = provenance("low_rank.py")
    report: dict = dict(fresh)
    earlier_report = read_report(args.out_name) if args.update else None
    if earlier_report is not None:
        report = earlier_report
        report["command"] = f"{report['command']}; then {fresh['command']}"
        report["date"] = f"{report['date']}; updated {fresh['date']}"
        report.get("layers", {}).pop("stack", None)  # older files kept the stack in "layers"
    report.update(backend=fresh["backend"], threads=args.threads)
    parts = {
        "layers": part_layers,
        "stack": part_stack,
        "network": part_network,
        "structured": part_structured,
    }
    earlier = report.get("total_seconds", 0.0) if args.update else 0.0
    for part in args.parts.split(","):
        before = report.get(part) if args.update else None
        report[part] = parts[part](args)
        if part == "network" and before:  # rows of other models and roundings stay
            new = {_network_key(r) for r in report[part]["rows"]}
            kept = [r for r in before["rows"] if _network_key(r) not in new]
            report[part]["rows"] = kept + report[part]["rows"]
        report["total_seconds"] = earlier + elapsed()
        text = write_report(args.out_name, report, to_markdown)  # after each part: none lost
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
