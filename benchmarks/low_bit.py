"""Binary and ternary networks (issue 13): BinaryConnect, BinaryNet, XNOR-Net / BWN, TWN and
TTQ fine-tuned from trained float models, test error and `.sqz` size beside float32 and the
published figures.

    python benchmarks/low_bit.py --parts lenet5              # LeNet-5 on MNIST
    python benchmarks/low_bit.py --parts fmnist --update     # ResNet-20, VGG-11 Fashion-MNIST
    python benchmarks/low_bit.py --parts kernel --update     # XNOR popcount vs float32 layers
    python benchmarks/low_bit.py --parts sharing --update    # plain vs Hessian-weighted k-means
    python benchmarks/low_bit.py --parts codebooks --update  # k-means, PQ, RQ, HashedNets
    python benchmarks/low_bit.py --parts lcnn --update       # LCNN error, FLOPs and speed
    python benchmarks/low_bit.py --parts mlp --device cuda   # all-binary MNIST MLPs, scratch

Each method starts from the same trained float model, fine-tunes the stated epochs (SGD,
momentum 0.9, cosine; first and last layers at 8 bits, the squeezer default), and is read on
a validation split carved from the training set after every epoch; the test set is read once,
at the end. Writes benchmarks/results/low_bit.{json,md}.
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
from baselines import RECIPES as BASELINE_RECIPES
from harness import CHECKPOINTS, elapsed, provenance, read_report, trained, write_report
from squeezer.quantization import (
    LAB,
    TTQ,
    TWN,
    XNOR,
    BinaryConnect,
    BinaryNet,
    TernaryConnect,
)

METHODS = {
    "binaryconnect": BinaryConnect(),
    "binaryconnect-stochastic": BinaryConnect(stochastic=True),
    "binarynet": BinaryNet(),
    "bwn": XNOR(quantize_inputs=False),
    "xnor": XNOR(),
    "lab": LAB(),
    "twn": TWN(),
    "ttq": TTQ(),
    "ternaryconnect": TernaryConnect(),
}
# Published figures (METHODS.md and the papers); different architectures where noted.
PUBLISHED = {
    ("lenet5", "binaryconnect"): "1.29% (MNIST MLP, Courbariaux 2015)",
    ("lenet5", "binarynet"): "0.96% (MNIST MLP, Courbariaux 2016)",
    ("lenet5", "twn"): "0.65% (LeNet-5, Li & Liu 2016)",
    ("resnet20", "ttq"): "8.87% (ResNet-20 CIFAR-10, Zhu 2017)",
}


def log(msg: str) -> None:
    print(f"[{elapsed():6.0f}s] {msg}", file=sys.stderr, flush=True)


def _sqz_bytes(model: torch.nn.Module) -> int:
    with tempfile.TemporaryDirectory() as folder:
        return sq.save(model, Path(folder) / "m.sqz").stat().st_size


def _split(train: Any, val_size: int) -> tuple[Any, Any]:
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
    return train.subset(order[val_size:]), train.subset(order[:val_size])


def _lenet5(train: Any) -> torch.nn.Module:
    path = CHECKPOINTS / "lenet5-mnist.pt"
    if path.exists():
        log(f"   baseline from {path}")
        return sq.load_checkpoint(path)
    torch.manual_seed(0)
    model = sq.models.create("lenet5")
    log("   training lenet5 on mnist")
    sq.fit(model, train, BASELINE_RECIPES["lenet5"], verbose=True)
    CHECKPOINTS.mkdir(parents=True, exist_ok=True)
    sq.save_checkpoint(model, path, meta={"dataset": "mnist"})
    return model


def run_model(name: str, dataset: str, args: argparse.Namespace) -> list[dict]:
    train, test = sq.data.load(dataset)
    base = (
        _lenet5(train)
        if name == "lenet5"
        else trained(name, dataset, train, 4, log, device=args.device)
    )
    base.eval()
    fit_part, val = _split(train, args.val_images)
    if args.train_images and args.train_images < len(fit_part):
        fit_part = fit_part.subset(range(args.train_images))
    x = sq.data.example_inputs(test)
    float_error = 1 - sq.evaluate(base, test)["top1"]
    float_bytes = _sqz_bytes(base)
    log(f"{name}: float32 test error {100 * float_error:.2f}%, .sqz {float_bytes:,} bytes")
    rows = [{
        "model": name, "dataset": dataset, "method": "float32", "epochs": 0,
        "test_error": float_error, "val_error_per_epoch": [], "sqz_bytes": float_bytes,
        "float_sqz_bytes": float_bytes, "published": "",
    }]  # fmt: skip
    epochs = args.epochs if name == "lenet5" else args.fmnist_epochs
    for method in args.methods.split(","):
        if args.deadline and elapsed() > args.deadline:
            log(f"   {method}: skipped, past the --deadline of {args.deadline:.0f} s")
            continue
        model = copy.deepcopy(base)
        t0 = elapsed()
        report = sq.quantize_(model, METHODS[method], x, data=train)
        if any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules()):
            sq.train.recalibrate_bn_(model, train, max_batches=20)
        right_after = 1 - sq.evaluate(model, val)["top1"]
        try:
            result = sq.fit(model, fit_part, epochs=epochs, lr=args.lr, val=val, verbose=True,
                            schedule="cosine", device=args.device)  # fmt: skip
            model.cpu()
        except FloatingPointError as err:  # reported as it is, the other methods go on
            log(f"   {method}: {err}")
            rows.append({"model": name, "dataset": dataset, "method": method, "epochs": epochs,
                         "diverged": str(err), "published": "", "val_error_per_epoch": [],
                         "test_error": float("nan"), "sqz_bytes": 0,
                         "float_sqz_bytes": float_bytes})  # fmt: skip
            continue
        val_errors = [1 - h["val_top1"] for h in result.history]
        row = {
            "model": name, "dataset": dataset, "method": method, "epochs": epochs,
            "train_images": len(fit_part), "lr": args.lr,
            "val_error_right_after": right_after, "val_error_per_epoch": val_errors,
            "test_error": 1 - sq.evaluate(model, test)["top1"],
            "sqz_bytes": _sqz_bytes(model), "float_sqz_bytes": float_bytes,
            "layers": dict(report.layers), "seconds": elapsed() - t0,
            "published": PUBLISHED.get((name, method.split("-")[0]), ""),
            "device": str(args.device or "cpu"),
        }  # fmt: skip
        rows.append(row)
        _partial(args, rows)
        log(f"   {method}: test error {100 * row['test_error']:.2f}%, "
            f".sqz {row['sqz_bytes']:,} bytes ({float_bytes / row['sqz_bytes']:.1f}x)")  # fmt: skip
    return rows


def _partial(args: argparse.Namespace, rows: list[dict]) -> None:
    """Rows so far, in case the run is stopped before the report is written."""
    import json

    path = CHECKPOINTS.parent / f"{args.report}.partial.json"
    path.write_text(json.dumps(rows, indent=1, default=str) + "\n")


def binary_mlp(hidden: int, depth: int = 3) -> torch.nn.Module:
    """The MNIST MLP of BinaryConnect and BinaryNet: ``depth`` hidden layers of ``hidden``
    units, each Linear -> BatchNorm -> ReLU (BinaryNet's quantize_ turns ReLU into Hardtanh
    and binarizes the layer inputs), and a 10-way Linear -> BatchNorm output."""
    nn = torch.nn
    layers: list[nn.Module] = [nn.Flatten()]
    width = 28 * 28
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), nn.BatchNorm1d(hidden), nn.ReLU()]
        width = hidden
    layers += [nn.Linear(width, 10), nn.BatchNorm1d(10)]
    return nn.Sequential(*layers)


MLP_METHODS = {  # method, hidden units, batch size (the papers': 1024 / 200, 4096 / 100)
    "float32": (None, 1024, 200),
    "binaryconnect": (BinaryConnect(first_last_bits=None), 1024, 200),
    "binaryconnect-stochastic": (BinaryConnect(stochastic=True, first_last_bits=None), 1024, 200),
    "binarynet": (BinaryNet(first_last_bits=None), 4096, 100),
}
MLP_PUBLISHED = {
    "binaryconnect": "1.29% (deterministic; Courbariaux 2015)",
    "binaryconnect-stochastic": "1.18% (stochastic; tested with the real-valued weights, "
    "not a binary network, in the paper's code; Courbariaux 2015)",
    "binarynet": "0.96% (Courbariaux 2016)",
}


def run_mlp(args: argparse.Namespace) -> list[dict]:
    """All-binary MLPs trained from scratch on MNIST (every layer binary, first and last too),
    as in the papers; epochs set from a measured first epoch to fit --mlp-budget seconds."""
    train, test = sq.data.load("mnist")
    train = train.without_augment()
    fit_part, val = _split(train, args.val_images)
    if args.train_images and args.train_images < len(fit_part):
        fit_part = fit_part.subset(range(args.train_images))
    rows = []
    for method in args.mlp_methods.split(","):
        config, hidden, batch = MLP_METHODS[method]
        torch.manual_seed(0)
        model = binary_mlp(hidden)
        if config is not None:
            sq.quantize_(model, config, torch.zeros(1, 1, 28, 28))
        t0 = elapsed()
        probe = copy.deepcopy(model)  # one timed epoch on a copy sets the epoch count
        sq.fit(probe, fit_part, epochs=1, lr=args.mlp_lr, optimizer="adam", weight_decay=0.0,
               batch_size=batch, device=args.device)  # fmt: skip
        per_epoch = max(elapsed() - t0, 1e-3)
        epochs = max(1, min(args.mlp_epochs, int(args.mlp_budget / per_epoch)))
        log(f"mlp {method}: {per_epoch:.1f} s an epoch, training {epochs} epochs")
        result = sq.fit(model, fit_part, epochs=epochs, lr=args.mlp_lr, optimizer="adam",
                        weight_decay=0.0, batch_size=batch, schedule="cosine", val=val,
                        device=args.device)  # fmt: skip
        model.cpu()
        val_errors = [1 - h["val_top1"] for h in result.history]
        row = {
            "method": method, "hidden": hidden, "batch_size": batch, "epochs": epochs,
            "lr": args.mlp_lr, "train_images": len(fit_part),
            "best_val_error": min(val_errors), "last_val_error": val_errors[-1],
            "test_error": 1 - sq.evaluate(model, test)["top1"],
            "sqz_bytes": _sqz_bytes(model),
            "float32_bytes": 4 * sum(p.numel() for p in model.parameters()),
            "seconds": elapsed() - t0, "device": str(args.device or "cpu"),
            "published": MLP_PUBLISHED.get(method, ""),
        }  # fmt: skip
        rows.append(row)
        _partial(args, rows)
        log(f"   {method}: test error {100 * row['test_error']:.2f}% after {epochs} epochs, "
            f".sqz {row['sqz_bytes']:,} bytes")  # fmt: skip
    return rows


def run_kernel(args: argparse.Namespace) -> list[dict]:
    """The packed XNOR layers against the float32 layer they replace, alternating, medians."""
    from squeezer.analysis import time_models
    from squeezer.quantization.xnor_kernel import extension, packed_twin

    t0 = elapsed()
    built = extension() is not None
    log(f"C++ kernel {'built' if built else 'NOT built: pure-PyTorch fallback'} "
        f"({elapsed() - t0:.0f} s)")  # fmt: skip
    cases = [
        ("fc 4096 x 4096", lambda: torch.nn.Linear(4096, 4096), (4096,)),
        ("conv 256 -> 256, 3x3, 28x28", lambda: torch.nn.Conv2d(256, 256, 3, padding=1),
         (256, 28, 28)),
    ]  # fmt: skip
    rows = []
    for label, make, shape in cases:
        torch.manual_seed(0)
        layer = torch.nn.Sequential(make()).eval()
        x = torch.randn(2, *shape)
        sq.quantize_(layer, XNOR(first_last_bits=None, model_input=True), data=[x])
        layer.eval()
        float_layer = torch.nn.Sequential(make()).eval()
        float_layer.load_state_dict({k: v for k, v in layer.state_dict().items()
                                     if k in float_layer.state_dict()})  # fmt: skip
        packed = packed_twin(layer[0], use_cpp=True)
        ok = torch.allclose(packed(x), layer(x), atol=1e-4)
        for batch in (1, 32):
            f, p = time_models([float_layer, packed], x[:1], batch, args.threads,
                               min_run_time=args.kernel_time)  # fmt: skip
            rows.append({
                "layer": label, "batch": batch, "threads": args.threads,
                "float32_ms": f.median_ms, "xnor_ms": p.median_ms,
                "speedup": f.median_ms / p.median_ms, "cpp_kernel": built,
                "matches_fake_quantized_layer": ok,
                "weight_bytes_float32": layer[0].weight.numel() * 4,
                "weight_bytes_packed": packed.weight_words.numel() * 8,
            })  # fmt: skip
            log(f"   {label} batch {batch}: float32 {f.median_ms:.3f} ms, XNOR "
                f"{p.median_ms:.3f} ms ({f.median_ms / p.median_ms:.2f}x)")  # fmt: skip
    return rows


def run_sharing(args: argparse.Namespace) -> list[dict]:
    """Plain against Hessian-weighted k-means on LeNet-5's fc layers (fc1 holds 93% of the
    weights), at equal bits, no fine-tuning: the error the clustering alone costs."""
    from squeezer.quantization import KMeansSharing

    train, test = sq.data.load("mnist")
    base = _lenet5(train).eval()
    fit_part, _ = _split(train, args.val_images)
    rows = []
    for bits in [int(b) for b in args.sharing_bits.split(",")]:
        for weighting in ("none", "fisher", "hessian"):
            model = copy.deepcopy(base)
            t0 = elapsed()
            config = KMeansSharing(bits=bits, layer_types=("Linear",), weighting=weighting,
                                   max_batches=args.curvature_batches)  # fmt: skip
            sq.quantize_(model, config, data=fit_part)
            row = {
                "model": "lenet5", "layers": "fc1, fc2", "bits": bits, "weighting": weighting,
                "test_error": 1 - sq.evaluate(model, test)["top1"],
                "sqz_bytes": _sqz_bytes(model), "seconds": elapsed() - t0,
                "curvature_batches": args.curvature_batches if weighting != "none" else 0,
            }  # fmt: skip
            rows.append(row)
            log(f"   k-means {bits} bits, weighting {weighting}: test error "
                f"{100 * row['test_error']:.2f}%, .sqz {row['sqz_bytes']:,} bytes")  # fmt: skip
    return rows


def run_lcnn(args: argparse.Namespace) -> list[dict]:
    """LCNN on LeNet-5's conv2 (fine-tuned, error and FLOPs) and on a 256-channel 3x3
    convolution (measured speed against the dense layer)."""
    from squeezer.analysis import time_models
    from squeezer.factorization import LCNN
    from squeezer.factorization.lookup import lookup_from_conv
    from squeezer.layers import lookup_flops

    train, test = sq.data.load("mnist")
    base = _lenet5(train).eval()
    fit_part, val = _split(train, args.val_images)
    val = val.without_augment()
    if args.train_images:
        fit_part = fit_part.subset(torch.arange(min(args.train_images, len(fit_part))))
    x1 = torch.zeros(1, 1, 28, 28)
    rows = []
    for k, lookups in [(4, 1), (8, 1), (8, 2), (16, 2)]:
        model = copy.deepcopy(base)
        t0 = elapsed()
        sq.factorize_(model, LCNN(rank=k, lookups=lookups, layers=("conv2",)), (x1,))
        after = 1 - sq.evaluate(model, val)["top1"]
        cfg = sq.TrainConfig(epochs=args.lcnn_epochs, lr=0.01, weight_decay=0)
        sq.fit(model, fit_part, cfg)
        flops = lookup_flops(model.conv2, 12, 12)
        times = {}
        for batch in (1, 32):
            f, c = time_models([base, model.eval()], x1, batch, args.threads,
                               min_run_time=args.kernel_time)  # fmt: skip
            times[batch] = (f.median_ms, c.median_ms)
        row = {
            "case": "lenet5 conv2 (20 -> 50, 5x5, 12x12)", "dictionary": k, "lookups": lookups,
            "val_error_right_after": after, "val_error": 1 - sq.evaluate(model, val)["top1"],
            "test_error": 1 - sq.evaluate(model, test)["top1"], "epochs": args.lcnn_epochs,
            "train_images": len(fit_part), "flops": flops,
            "model_ms": {str(b): {"float32": t[0], "lcnn": t[1]} for b, t in times.items()},
            "sqz_bytes": _sqz_bytes(model), "seconds": elapsed() - t0,
        }  # fmt: skip
        rows.append(row)
        log(
            f"   LCNN conv2 k={k} s={lookups}: val {100 * after:.2f}% -> "
            f"{100 * row['val_error']:.2f}%, lookup+dict FLOPs {flops['total']:,} vs dense "
            f"{flops['dense_conv']:,}; model b1 {times[1][0]:.3f} -> {times[1][1]:.3f} ms"
            )  # fmt: skip
    for k, lookups in [(64, 1), (64, 2), (128, 2)]:
        torch.manual_seed(0)
        conv = torch.nn.Conv2d(256, 256, 3, padding=1).eval()
        layer = lookup_from_conv(conv, k, lookups).eval()
        x = torch.randn(1, 256, 28, 28)
        flops = lookup_flops(layer, 28, 28)
        for batch in (1, 32):
            f, c = time_models([conv, layer], x, batch, args.threads,
                               min_run_time=args.kernel_time)  # fmt: skip
            rows.append({
                "case": "conv 256 -> 256, 3x3, 28x28", "dictionary": k, "lookups": lookups,
                "batch": batch, "threads": args.threads, "float32_ms": f.median_ms,
                "lcnn_ms": c.median_ms, "speedup": f.median_ms / c.median_ms, "flops": flops,
            })  # fmt: skip
            log(f"   conv256 k={k} s={lookups} batch {batch}: {f.median_ms:.3f} -> "
                f"{c.median_ms:.3f} ms ({f.median_ms / c.median_ms:.2f}x); FLOPs "
                f"{flops['total']:,} (lookups counted) vs {flops['dense_conv']:,}")  # fmt: skip
    return rows


def codebook_methods() -> list[tuple[str, float, Any]]:
    """(label, nominal bits per fc weight, config) of the codebook comparison."""
    from squeezer.quantization import (
        HashedNets,
        KMeansSharing,
        ProductQuantization,
        ResidualQuantization,
    )

    fc = {"layer_types": ("Linear",)}
    return [
        ("k-means", 2, KMeansSharing(bits=2, **fc)),
        ("k-means, Hessian-weighted", 2, KMeansSharing(bits=2, weighting="hessian", **fc)),
        ("PQ, 4-vectors, 256 words, one codebook", 2,
         ProductQuantization(subvector=4, bits=8, shared_codebook=True, **fc)),
        ("PQ, 4-vectors, 4 words per segment", 0.5,
         ProductQuantization(subvector=4, bits=2, **fc)),
        ("Q-CNN (PQ fitted to the outputs), 4-vectors, 4 words per segment", 0.5,
         ProductQuantization(subvector=4, bits=2, response=True, **fc)),
        ("RQ, 4-vectors, 2 x 16 words", 2,
         ResidualQuantization(subvector=4, bits=4, shared_codebook=True, **fc)),
        ("HashedNets, 1/16", 2, HashedNets(compression=16, **fc)),
        ("k-means", 1, KMeansSharing(bits=1, **fc)),
        ("PQ, 4-vectors, 16 words, one codebook", 1,
         ProductQuantization(subvector=4, bits=4, shared_codebook=True, **fc)),
        ("RQ, 4-vectors, 2 x 4 words", 1,
         ResidualQuantization(subvector=4, bits=2, shared_codebook=True, **fc)),
        ("HashedNets, 1/32", 1, HashedNets(compression=32, **fc)),
    ]  # fmt: skip


def run_codebooks(args: argparse.Namespace) -> list[dict]:
    """k-means (plain, Hessian-weighted), product and residual quantization and HashedNets
    on LeNet-5's fc layers at about equal bits: error straight after, after fine-tuning the
    codebooks (or buckets), and the .sqz size."""
    train, test = sq.data.load("mnist")
    base = _lenet5(train).eval()
    fit_part, val = _split(train, args.val_images)
    val = val.without_augment()
    if args.train_images:
        fit_part = fit_part.subset(torch.arange(min(args.train_images, len(fit_part))))
    rows = []
    for label, bits, config in codebook_methods():
        model = copy.deepcopy(base)
        t0 = elapsed()
        sq.quantize_(model, config, data=fit_part)
        after = 1 - sq.evaluate(model, val)["top1"]
        cfg = sq.TrainConfig(epochs=args.codebook_epochs, lr=args.codebook_lr, weight_decay=0)
        sq.fit(model, fit_part, cfg)
        row = {
            "model": "lenet5", "layers": "fc1, fc2", "method": label, "nominal_bits": bits,
            "config": config.to_dict(), "val_error_right_after": after,
            "val_error": 1 - sq.evaluate(model, val)["top1"],
            "test_error": 1 - sq.evaluate(model, test)["top1"],
            "sqz_bytes": _sqz_bytes(model), "epochs": args.codebook_epochs,
            "train_images": len(fit_part), "seconds": elapsed() - t0,
        }  # fmt: skip
        rows.append(row)
        log(f"   {label} (~{bits} bits): val {100 * after:.2f}% -> {100 * row['val_error']:.2f}%"
            f", test {100 * row['test_error']:.2f}%, .sqz {row['sqz_bytes']:,} bytes")  # fmt: skip
    return rows


def to_markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Binary and ternary networks",
        "",
        f"Command: `{report['command']}`  ",
        f"Date: {report['date']}; torch {report['torch']}; {report['threads']} threads; "
        f"total {report['seconds'] / 60:.1f} min (last run); training on "
        f"{report.get('device', 'cpu')} (evaluation and `.sqz` writing on the CPU).",
        "",
        "Every method starts from the same trained float32 model and fine-tunes the stated "
        "epochs (SGD, momentum 0.9, cosine from the stated lr) on the training images left "
        "after a validation split; first and last layers stay at 8 bits (squeezer's default; "
        "the papers keep them full precision or binarize them, see each). The validation "
        "error is read after every epoch (on images the float baseline was trained on, so "
        "it is optimistic; no setting was chosen by it), the test error once at the end. "
        "Size: the whole "
        "`.sqz` file (binary weights 1 bit, ternary 2 bits before Huffman coding, per-channel "
        "or per-layer scales beside them, 8-bit first and last layers, float32 biases and "
        "BatchNorm).",
        "",
        "| model | dataset | method | epochs x images | val error after quantizing | val "
        "error per epoch | test error | .sqz bytes | smaller than float32 | published |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    kernel = report.get("kernel", [])
    for r in report.get("runs", []):
        if r.get("diverged"):
            lines.append(f"| {r['model']} | {r['dataset']} | {r['method']} | {r['epochs']} | "
                         f"| {r['diverged']} | | | | |")  # fmt: skip
            continue
        per = ", ".join(f"{100 * v:.2f}" for v in r["val_error_per_epoch"])
        after = r.get("val_error_right_after")
        lines.append(
            f"| {r['model']} | {r['dataset']} | {r['method']} | "
            f"{r['epochs']} x {r.get('train_images', 0):,} | "
            f"{'' if after is None else f'{100 * after:.2f}%'} | {per} | "
            f"{100 * r['test_error']:.2f}% | {r['sqz_bytes']:,} | "
            f"{r['float_sqz_bytes'] / r['sqz_bytes']:.1f}x | {r['published']} |"
        )
    lines.append("")
    sharing = report.get("sharing", [])
    if sharing:
        lines += [
            "## Plain and Hessian-weighted k-means on LeNet-5's fc layers (no fine-tuning)",
            "",
            "Both fc layers shared at the stated bits (convolutions float32), test error "
            "straight after clustering. Weighting: none (plain k-means), fisher (mean squared "
            "minibatch gradient) or hessian (Hutchinson's diagonal), over the stated batches of "
            "64 training images. Float32 LeNet-5 test error in the table above.",
            "",
            "| bits | weighting | curvature batches | test error | .sqz bytes |",
            "| --- | --- | --- | --- | --- |",
        ]
        for r in sharing:
            lines.append(
                f"| {r['bits']} | {r['weighting']} | {r['curvature_batches']} | "
                f"{100 * r['test_error']:.2f}% | {r['sqz_bytes']:,} |"
            )
        lines.append("")
    codebooks = report.get("codebooks", [])
    if codebooks:
        r0 = codebooks[0]
        lines += [
            "## Codebooks at equal bits on LeNet-5's fc layers: k-means, PQ, RQ, HashedNets",
            "",
            "fc1 (500 x 800) and fc2 (10 x 500) quantized, convolutions float32; error on the "
            "validation split right after quantizing and after fine-tuning the codebooks "
            f"(buckets) {r0['epochs']} epoch(s) on {r0['train_images']:,} images (SGD, "
            "momentum 0.9, cosine, no weight decay); test error read once at the end; size: "
            "the whole `.sqz` (float32 convolutions and biases included; the float32 model "
            "is 1,724,320 bytes of parameters). Nominal bits: index bits per fc weight, "
            "codebooks not counted (the file size counts them).",
            "",
            "| method | nominal bits / weight | val error right after | val error after "
            "fine-tuning | test error | .sqz bytes |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for r in codebooks:
            lines.append(
                f"| {r['method']} | {r['nominal_bits']:g} | "
                f"{100 * r['val_error_right_after']:.2f}% | {100 * r['val_error']:.2f}% | "
                f"{100 * r['test_error']:.2f}% | {r['sqz_bytes']:,} |"
            )
        lines.append("")
    lcnn = report.get("lcnn", [])
    if lcnn:
        lines += [
            "## LCNN: lookup-based convolution",
            "",
            "LeNet-5's conv2 replaced by a LookupConv2d (dictionary from k-means of the "
            "filters' depth vectors, coefficients by OMP), then the whole model fine-tuned "
            "(SGD lr 0.01, cosine); FLOPs of the layer: dictionary product plus one "
            "multiply-add per non-zero coefficient per output pixel (what a lookup "
            "implementation executes) against the dense convolution; time: the whole model, "
            "eager float32, the LCNN layer run as a 1x1 convolution then a dense convolution "
            "over the dictionary channels (PyTorch has no sparse lookup kernel), alternating, "
            "medians.",
            "",
            "| layer | dictionary | lookups | val error right after | val error after | test "
            "error | layer FLOPs (dense) | model ms b1 float -> LCNN | model ms b32 |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in lcnn:
            if "model_ms" not in r:
                continue
            b1, b32 = r["model_ms"]["1"], r["model_ms"]["32"]
            lines.append(
                f"| {r['case']} | {r['dictionary']} | {r['lookups']} | "
                f"{100 * r['val_error_right_after']:.2f}% | {100 * r['val_error']:.2f}% | "
                f"{100 * r['test_error']:.2f}% | {r['flops']['total']:,} "
                f"({r['flops']['dense_conv']:,}) | {b1['float32']:.3f} -> {b1['lcnn']:.3f} | "
                f"{b32['float32']:.3f} -> {b32['lcnn']:.3f} |"
            )
        lines += [
            "",
            "| layer | dictionary | lookups | batch | threads | dense ms | LCNN ms | speedup "
            "| FLOPs LCNN (dense) |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in lcnn:
            if "batch" not in r:
                continue
            lines.append(
                f"| {r['case']} | {r['dictionary']} | {r['lookups']} | {r['batch']} | "
                f"{r['threads']} | {r['float32_ms']:.3f} | {r['lcnn_ms']:.3f} | "
                f"{r['speedup']:.2f}x | {r['flops']['total']:,} ({r['flops']['dense_conv']:,}) |"
            )
        lines.append("")
    if kernel:
        lines += [
            "## Binary inference: XNOR and popcount against the float32 layer",
            "",
            "Eager float32 `nn.Linear` / `nn.Conv2d` against the packed XNOR layer (inputs "
            "binarized and packed at run time, included in its time; C++ kernel built with "
            "`-march=native`), alternating, medians; threads as stated.",
            "",
            "| layer | batch | threads | float32 ms | XNOR ms | speedup | weights float32 -> "
            "packed bytes | equals the fake-quantized layer | C++ kernel |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in kernel:
            lines.append(
                f"| {r['layer']} | {r['batch']} | {r['threads']} | {r['float32_ms']:.3f} | "
                f"{r['xnor_ms']:.3f} | {r['speedup']:.2f}x | {r['weight_bytes_float32']:,} -> "
                f"{r['weight_bytes_packed']:,} | {r['matches_fake_quantized_layer']} | "
                f"{r['cpp_kernel']} |"
            )
        lines.append("")
    mlp = report.get("mlp", [])
    if mlp:
        lines += [
            "## All-binary MNIST MLPs trained from scratch (the BinaryConnect / BinaryNet anchors)",
            "",
            "Three hidden layers (Linear, BatchNorm, ReLU; BinaryNet: Hardtanh and binary "
            "layer inputs), every layer's weights binary, first and last included, as in the "
            "papers; Adam at the stated lr, cosine, no weight decay, no augmentation; epochs "
            "set from a timed first epoch to fit the time budget (the papers train for "
            "hundreds of epochs). Validation split as above; test read once at the end. "
            "Size: the whole `.sqz`, against the float32 parameters of the same network.",
            "",
            "| method | hidden units | batch | epochs | device | best / last val error | "
            "test error | .sqz bytes | float32 bytes | published |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in mlp:
            lines.append(
                f"| {r['method']} | {r['hidden']} | {r['batch_size']} | {r['epochs']} | "
                f"{r['device']} | {100 * r['best_val_error']:.2f}% / "
                f"{100 * r['last_val_error']:.2f}% | {100 * r['test_error']:.2f}% | "
                f"{r['sqz_bytes']:,} | {r['float32_bytes']:,} | {r['published']} |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="lenet5,fmnist,sharing,kernel")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--epochs", type=int, default=4, help="LeNet-5 fine-tuning epochs")
    parser.add_argument("--fmnist-epochs", type=int, default=1)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--val-images", type=int, default=5000)
    parser.add_argument(
        "--train-images", type=int, default=0, help="fine-tune on at most this many (0: all)"
    )
    parser.add_argument("--fmnist-models", default="resnet20,vgg11_bn")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sharing-bits", default="2,3,4")
    parser.add_argument("--curvature-batches", type=int, default=16)
    parser.add_argument("--codebook-epochs", type=int, default=1)
    parser.add_argument("--lcnn-epochs", type=int, default=1)
    parser.add_argument("--codebook-lr", type=float, default=0.001)
    parser.add_argument("--kernel-time", type=float, default=1.0, help="kernel: seconds a case")
    parser.add_argument("--update", action="store_true", help="keep other models' rows")
    parser.add_argument("--device", default=None, help="where to train (cpu, cuda)")
    parser.add_argument(
        "--deadline", type=float, default=0, help="skip methods started after this many seconds"
    )
    parser.add_argument("--report", default="low_bit", help="results/NAME.{json,md}")
    parser.add_argument(
        "--merge", default="", help="combine these reports (comma-separated names) into --report"
    )
    parser.add_argument("--mlp-methods", default=",".join(MLP_METHODS))
    parser.add_argument("--mlp-epochs", type=int, default=200, help="mlp: at most this many")
    parser.add_argument("--mlp-budget", type=float, default=240, help="mlp: seconds a method")
    parser.add_argument("--mlp-lr", type=float, default=0.003)
    args = parser.parse_args()
    if args.merge:
        return merge(args)
    torch.set_num_threads(args.threads)
    report: dict[str, Any] = {**provenance("low_bit.py")}
    runs: list[dict] = []
    done = set()
    for part in args.parts.split(","):
        if part in ("kernel", "sharing", "codebooks", "lcnn", "mlp"):
            run = {"kernel": run_kernel, "sharing": run_sharing, "codebooks": run_codebooks,
                   "lcnn": run_lcnn, "mlp": run_mlp}  # fmt: skip
            report[part] = run[part](args)
            continue
        models = [("lenet5", "mnist")] if part == "lenet5" else [
            (m, "fashion-mnist") for m in args.fmnist_models.split(",")
        ]  # fmt: skip
        for name, dataset in models:
            runs += run_model(name, dataset, args)
            done.add(name)
    earlier = read_report(args.report) if args.update else None
    if earlier:
        again = set(args.methods.split(",")) | {"float32"}
        kept = [r for r in earlier.get("runs", [])
                if r["model"] not in done or r["method"] not in again]  # fmt: skip
        runs = kept + runs
        report["command"] = f"{earlier['command']}; then {report['command']}"
        report["date"] = f"{earlier['date']}; updated {report['date']}"
        report.setdefault("kernel", earlier.get("kernel", []))
        report.setdefault("sharing", earlier.get("sharing", []))
        report.setdefault("codebooks", earlier.get("codebooks", []))
        report.setdefault("lcnn", earlier.get("lcnn", []))
        report.setdefault("mlp", earlier.get("mlp", []))
    order = {m: i for i, m in enumerate(["float32", *METHODS])}
    report["runs"] = sorted(runs, key=lambda r: (r["model"], order.get(r["method"], 99)))
    report["seconds"] = elapsed()
    print(write_report(args.report, report, to_markdown))


def merge(args: argparse.Namespace) -> None:
    """One report from several (runs made in parallel, e.g. one process per model)."""
    parts = [read_report(name) for name in args.merge.split(",")]
    parts = [p for p in parts if p is not None]
    report = {**parts[0], "command": "; ".join(p["command"] for p in parts)}
    runs, floats = [], set()
    for r in (r for p in parts for r in p.get("runs", [])):
        if r["method"] == "float32":  # every process measured its model's baseline
            if r["model"] in floats:
                continue
            floats.add(r["model"])
        runs.append(r)
    order = {m: i for i, m in enumerate(["float32", *METHODS])}
    report["runs"] = sorted(runs, key=lambda r: (r["model"], order.get(r["method"], 99)))
    for key in ("kernel", "sharing", "codebooks", "lcnn", "mlp"):
        report[key] = [r for p in parts for r in p.get(key, [])]
    report["seconds"] = max(p["seconds"] for p in parts)
    trained = [r for p in parts for r in p.get("runs", []) + p.get("mlp", []) if "device" in r]
    devices = sorted({r["device"] for r in trained}) or ["cpu"]
    report["device"] = ", ".join(devices)
    print(write_report(args.report, report, to_markdown))


if __name__ == "__main__":
    main()
