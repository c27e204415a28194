"""``squeezer demo``: the main job in one run: train, compress, reload and measure LeNet-300-100.

One module per command: its options (:func:`add_parser`) beside its body (:func:`run`).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from squeezer.cli.common import (
    info,
    json_option,
    positive,
    write_json,
)


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="train, compress, reload and measure LeNet-300-100: the main job in one run",
        description="Train LeNet-300-100 on MNIST (or, offline without MNIST, "
        "scikit-learn's digits), compress it (magnitude pruning with retraining, k-means "
        "weight sharing, Huffman coding), reload the .sqz file and print size, accuracy and "
        "measured latency before and after.",
    )
    p.add_argument(
        "--epochs", type=positive, default=4, metavar="N", help="training epochs (default: 4)"
    )
    p.add_argument("--data-dir", metavar="DIR", help="folder to look in first for MNIST")
    p.add_argument("--out", metavar="FILE", help="also keep the compressed .sqz file")
    json_option(p)
    p.set_defaults(run=run)


DEMO_RECIPE = {
    "name": "demo",
    "batch_size": 128,
    "stages": [
        {"prune": {"per_layer": {"fc1": 0.92, "fc2": 0.91, "fc3": 0.74}, "rounds": 2, "epochs": 1}},
        {"share": {"fc_bits": 5}},
        {"fine-tune": {"epochs": 1, "lr": 0.001, "weight_decay": 0}},
        {"code": {"coding": "huffman"}},
    ],
}


def run(args: argparse.Namespace) -> int:
    import copy
    import tempfile

    import torch

    import squeezer as sq
    from squeezer.data.files import ENV_VAR
    from squeezer.errors import DatasetNotFoundError
    from squeezer.pipeline import Recipe, run_recipe

    started = time.perf_counter()
    try:
        train, test = sq.data.load("mnist", args.data_dir)
        dataset = "mnist"
    except DatasetNotFoundError as exc:
        info(
            f"MNIST could be neither found nor downloaded ({str(exc).split('.')[0]}); "
            f"falling back to scikit-learn's bundled 8x8 digits (1,797 images) resized to "
            f"28x28. Set {ENV_VAR} to a folder holding mnist/ to use MNIST."
        )
        train, test = sq.data.load("digits")
        dataset = "digits"
    model = sq.models.create("lenet300", num_classes=train.num_classes)
    info(
        f"squeezer demo: 1. train LeNet-300-100 on {dataset} ({len(train):,} training images) "
        f"for {args.epochs} epoch(s); 2. compress it (prune with retraining, share weights, "
        "Huffman code); 3. reload the file and measure both"
    )
    epochs = args.epochs if dataset == "mnist" else max(args.epochs, 30)
    batch = 128 if dataset == "mnist" else 64
    sq.fit(model, train, val=test, epochs=epochs, lr=0.1, verbose=True, batch_size=batch)
    baseline = copy.deepcopy(model).eval()
    recipe = Recipe.from_dict({**DEMO_RECIPE, "batch_size": batch}, "demo recipe")
    result = run_recipe(
        model, train, test, recipe, verbose=True, log=info, meta={"dataset": dataset}
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.out or Path(tmp) / "lenet300.sqz")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(result.sqz)
        reloaded = sq.load(path, sparse=True)  # pruned fc layers run as CSR sparse kernels
        top1 = sq.evaluate(reloaded, test)["top1"]
        if args.out:
            info(f"saved {path}")
    m = sq.measure(
        reloaded,
        sq.data.example_inputs(test),
        baseline=baseline,
        batch_sizes=(1, 256),
        per_layer_latency=False,
        min_run_time=0.3,
    )
    base_top1 = result.top1_before
    lat = {(r.batch_size): r.median_ms for r in m.latency}
    base_lat = {(r.batch_size): r.median_ms for r in m.baseline.latency} if m.baseline else {}
    rows = [
        ("LeNet-300-100 (float32)", result.baseline_bytes, base_top1, base_lat),
        ("compressed, reloaded from .sqz", len(result.sqz), top1, lat),
    ]
    print()
    print(
        f"{'model':32s} {'bytes':>10s} {'rate':>7s} {'top-1':>8s} {'ms b=1':>8s} {'ms b=256':>9s}"
    )
    for name, size, acc, times in rows:
        print(
            f"{name:32s} {size:>10,} {result.baseline_bytes / size:6.1f}x {100 * acc:7.2f}% "
            f"{times.get(1, float('nan')):8.3f} {times.get(256, float('nan')):9.3f}"
        )
    speed = {s["batch_size"]: s["speedup"] for s in m.comparison.speedup} if m.comparison else {}
    print(
        f"accuracy cost {100 * (base_top1 - top1):.2f} points; measured speedup "
        + ", ".join(f"{v:.2f}x at batch {k}" for k, v in sorted(speed.items()))
        + f" ({m.backend}, {torch.get_num_threads()} threads, CSR fc layers); "
        f"{time.perf_counter() - started:.0f} s in all"
    )
    write_json(
        args.json,
        {
            "dataset": dataset,
            "model": "lenet300",
            "top1_before": base_top1,
            "top1_after": top1,
            "size_bytes_before": result.baseline_bytes,
            "size_bytes_after": len(result.sqz),
            "compression_rate": result.compression_rate,
            "recipe": result.to_dict(),
            "measure": m.to_dict(),
            "seconds": time.perf_counter() - started,
        },
    )
    return 0
