"""The commands behind ``squeezer train | evaluate | measure | demo | models | datasets``."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from squeezer.cli.common import (
    UsageError,
    check_fits,
    info,
    load_model,
    parse_ints,
    write_json,
)


def _dataset(name: str, data_dir: str | None, *, augment: bool = True, limit: int | None = None):
    import squeezer.data as sqdata

    train, test = sqdata.load(name, data_dir, augment=augment)
    if limit is not None:
        train, test = train.subset(limit), test.subset(limit)
    return train, test


def _create_for(name: str, train: Any) -> Any:
    """Zoo model ``name`` shaped for the images and classes of dataset ``train``."""
    from squeezer.models import accepts, create

    c, h, _ = train.input_shape
    kwargs: dict[str, Any] = {"num_classes": train.num_classes, "in_channels": c}
    if accepts(name, "input_size"):
        kwargs["input_size"] = h
    return create(name, **kwargs)


def cmd_train(args: argparse.Namespace) -> int:
    import squeezer as sq
    from squeezer.data import canonical_name
    from squeezer.models import model_fn

    model_fn(args.model)  # unknown model: fail before reading data
    dataset = canonical_name(args.dataset)
    train, test = _dataset(dataset, args.data_dir, augment=not args.no_augment, limit=args.limit)
    model = _create_for(args.model, train)
    config = sq.TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        optimizer=args.optimizer,
        lr=args.lr,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        schedule=args.schedule,
        seed=args.seed,
    )
    out = Path(args.out or f"{args.model}-{dataset}.pt")
    if out.exists() and not args.resume and not args.force:
        raise UsageError(f"{out} exists; pass --resume to continue it or --force to overwrite")
    info(
        f"training {args.model} on {dataset} ({len(train):,} images) for {args.epochs} "
        f"epoch(s); checkpoint {out}"
    )
    result = sq.fit(
        model, train, config, val=test, checkpoint=out, resume=args.resume, verbose=not args.quiet
    )
    metrics = sq.evaluate(model, test)
    sq.save_checkpoint(
        model,
        out,
        train_state=_train_state(out),
        meta={
            "dataset": dataset,
            "top1": metrics["top1"],
            "loss": metrics["loss"],
            "epochs": args.epochs,
        },
    )
    info(
        f"test top1 {metrics['top1']:.4f} (error {100 * (1 - metrics['top1']):.2f}%), "
        f"loss {metrics['loss']:.4f}; saved {out}"
    )
    write_json(
        args.json,
        {
            "model": args.model,
            "dataset": dataset,
            "checkpoint": str(out),
            "top1": metrics["top1"],
            "top5": metrics.get("top5"),
            "loss": metrics["loss"],
            "epochs": args.epochs,
            "resumed_from_epoch": result.start_epoch,
            "config": config.to_dict(),
            "history": result.history,
            "seconds": result.seconds,
        },
    )
    return 0


def _train_state(path: Path) -> dict[str, Any] | None:
    from squeezer.train import read_checkpoint

    return read_checkpoint(path).get("train_state") if path.exists() else None


def cmd_evaluate(args: argparse.Namespace) -> int:
    import squeezer as sq
    from squeezer.data import canonical_name

    model, source = load_model(args.checkpoint, args)
    dataset = args.dataset or source["meta"].get("dataset")
    if not dataset:
        raise UsageError(f"{args.checkpoint} records no dataset; pass --dataset NAME")
    dataset = canonical_name(dataset)
    _, test = _dataset(dataset, args.data_dir, limit=args.limit)
    check_fits(model, test.input_shape, test.num_classes, dataset)
    metrics = sq.evaluate(model, test)
    top5 = f", top5 {metrics['top5']:.4f}" if "top5" in metrics else ""
    print(
        f"{args.checkpoint} on {dataset} test ({metrics['n']:,} images): "
        f"top1 {metrics['top1']:.4f} (error {100 * (1 - metrics['top1']):.2f}%){top5}, "
        f"loss {metrics['loss']:.4f}"
    )
    write_json(args.json, {"checkpoint": args.checkpoint, "dataset": dataset, **metrics})
    return 0


def cmd_measure(args: argparse.Namespace) -> int:
    import torch

    import squeezer as sq

    model, source = load_model(args.checkpoint, args)
    if args.sparse:
        from squeezer.pruning import sparsify_

        replaced = sparsify_(model)
        info(f"sparse CSR kernels for: {', '.join(replaced) or 'no layer (none is half zeros)'}")
    shape = (
        parse_ints(args.input_shape, "--input-shape") if args.input_shape else source["input_shape"]
    )
    if not shape:
        raise UsageError(f"{args.checkpoint}: input shape unknown; pass --input-shape C,H,W")
    baseline = None
    if args.baseline:
        baseline, _ = load_model(args.baseline, args)
    batch_sizes = parse_ints(args.batch_sizes, "--batch-sizes")
    threads = parse_ints(args.threads, "--threads") if args.threads else None
    x = torch.randn(1, *shape)
    try:
        m = sq.measure(
            model,
            x,
            baseline=baseline,
            batch_sizes=batch_sizes,
            threads=threads,
            latency=not args.no_latency,
            min_run_time=args.min_run_time,
            layout=args.layout,
        )
    except RuntimeError as exc:  # shape mismatch between the model and --input-shape
        first = str(exc).splitlines()[0]
        raise UsageError(
            f"the model does not run on inputs of shape {tuple(shape)}: {first}"
        ) from None
    if source["source"] == "zoo":
        info(f"{args.checkpoint}: zoo model with random weights")
    print(m)
    payload = m.to_dict()
    files = [Path(p) for p in (args.checkpoint, args.baseline) if p and Path(p).is_file()]
    if Path(args.checkpoint).is_file():
        payload["file_bytes"] = Path(args.checkpoint).stat().st_size
    if len(files) == 2:
        payload["baseline_file_bytes"] = files[1].stat().st_size
        payload["file_compression_rate"] = files[1].stat().st_size / files[0].stat().st_size
        print(
            f"  files: {files[1].stat().st_size:,} -> {files[0].stat().st_size:,} bytes "
            f"({payload['file_compression_rate']:.2f}x)"
        )
    write_json(args.json, payload)
    return 0


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


def cmd_demo(args: argparse.Namespace) -> int:
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


def cmd_models(args: argparse.Namespace) -> int:
    from squeezer.models import list_models

    names = list_models(args.pattern)
    if not names:
        raise UsageError(f"no model matches {args.pattern!r}")
    print("\n".join(names))
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from squeezer.data import list_datasets, search_dirs

    for name in list_datasets():
        where = (
            "bundled with scikit-learn"
            if name == "digits"
            else "searched in: " + ", ".join(str(d) for d in search_dirs(name, args.data_dir))
        )
        print(f"{name:14s} {where}")
    return 0


def cmd_compress(args: argparse.Namespace) -> int:
    import squeezer as sq
    from squeezer.data import canonical_name
    from squeezer.models import list_models
    from squeezer.pipeline import RECIPES, format_result, run_deep_compression

    recipe_cls = RECIPES[args.recipe]
    recipe = recipe_cls.from_yaml(Path(args.config)) if args.config else recipe_cls()
    if args.quick:
        recipe = recipe.replace(prune_rounds=1, prune_epochs=1, share_epochs=1, baseline_epochs=1)
    spec = args.model
    from_zoo = not Path(spec).exists() and spec in list_models()
    if from_zoo:
        model, source = None, {"meta": {}}
    else:
        model, source = load_model(spec, args)
    dataset = canonical_name(args.dataset or source["meta"].get("dataset") or "mnist")
    name = Path(spec).stem if not from_zoo else spec
    out = Path(args.out or f"{name}-{dataset}.sqz")
    if out.exists() and not args.force:
        raise UsageError(f"{out} exists; pass --force to overwrite it or choose --out")
    train, test = _dataset(dataset, args.data_dir, limit=args.limit)
    if model is None:
        model = _create_for(spec, train)
        info(f"training the baseline {spec} on {dataset} for {recipe.baseline_epochs} epoch(s)")
        sq.fit(
            model,
            train,
            recipe.train(recipe.baseline_epochs, recipe.baseline_lr),
            val=test,
            verbose=not args.quiet,
        )
    check_fits(model, test.input_shape, test.num_classes, dataset)
    info(
        f"deep compression of {name} on {dataset}: prune ({recipe.prune_rounds} rounds x "
        f"{recipe.prune_epochs} epochs), share weights ({recipe.share_epochs} epochs), "
        f"Huffman code"
    )
    result = run_deep_compression(
        model,
        train,
        test,
        recipe,
        verbose=not args.quiet,
        log=info,
        meta={"dataset": dataset, "recipe": args.recipe},
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(result.sqz)
    print(format_result(result))
    info(f"wrote {out} ({result.size_bytes:,} bytes)")
    write_json(
        args.json,
        {
            **result.to_dict(),
            "dataset": dataset,
            "out": str(out),
            "recipe": {"name": args.recipe, **recipe.to_dict()},
        },
    )
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from squeezer.coding import read

    contents = read(args.file)
    header = contents.header
    arch = header.get("arch") or {}
    rows = []
    for r in contents.reports:

        def pair(a: float | None, b: float | None) -> str:
            return "" if a is None or b is None else f"{a:.2f}/{b:.2f}"

        rows.append(
            (
                r.name,
                "x".join(map(str, r.shape)) or "scalar",
                r.encoding,
                f"{r.sparsity:.3f}",
                str(r.index_bits or ""),
                str(r.codebook or ""),
                pair(r.index_avg_bits, r.index_entropy),
                str(r.gap_bits or ""),
                pair(r.gap_avg_bits, r.gap_entropy),
                f"{r.bytes:,}",
            )
        )
    head = (
        "tensor",
        "shape",
        "encoding",
        "sparsity",
        "idx bits",
        "codebook",
        "huffman/entropy",
        "gap bits",
        "gap huff/entropy",
        "bytes",
    )
    widths = [max(len(x) for x in col) for col in zip(head, *rows, strict=True)]
    print(
        f"{args.file}: .sqz version {header.get('version')}, model {arch.get('name')} "
        f"{arch.get('kwargs', {})}"
    )
    for line in (head, ["-" * w for w in widths], *rows):
        print(
            "  ".join(
                c.ljust(w) if i < 3 else c.rjust(w)
                for i, (c, w) in enumerate(zip(line, widths, strict=True))
            )
        )
    payload = sum(r.bytes for r in contents.reports)
    float_bytes = sum(4 * r.numel for r in contents.reports)
    print(
        f"payload {payload:,} bytes + header and framing {contents.file_bytes - payload:,} = "
        f"{contents.file_bytes:,} bytes; the same tensors as float32: {float_bytes:,} bytes "
        f"({float_bytes / contents.file_bytes:.1f}x)"
    )
    print(
        "bits: idx = codebook index width before Huffman, gap = relative-index field width; "
        "huffman/entropy = average Huffman code length / Shannon entropy, bits per symbol"
    )
    write_json(
        args.json,
        {
            "file": args.file,
            "file_bytes": contents.file_bytes,
            "header_bytes": contents.file_bytes - payload,
            "arch": arch,
            "meta": header.get("meta", {}),
            "float32_bytes": float_bytes,
            "tensors": [vars(r) | {"sparsity": r.sparsity} for r in contents.reports],
        },
    )
    return 0


def _measure_and_save(
    args: argparse.Namespace,
    model: Any,
    baseline: Any,
    x: Any,
    result: dict[str, Any],
    dataset: str | None,
    adjective: str,
) -> int:
    """Measure ``model`` against ``baseline``, save it (--out) and write the JSON result."""
    import squeezer as sq

    m = sq.measure(
        model,
        x,
        baseline=baseline,
        batch_sizes=parse_ints(args.batch_sizes, "--batch-sizes"),
        min_run_time=args.min_run_time,
        layout=args.layout,
    )
    print(m)
    out = Path(args.out or f"{Path(args.model).stem}-{adjective}.sqz")
    meta = {"dataset": dataset}
    if out.suffix == ".sqz":
        sq.save(model, out, meta=meta)
    else:
        sq.save_checkpoint(model, out, meta=meta)
    info(f"wrote {out}")
    write_json(args.json, {**result, **m.to_dict(), "out": str(out)})
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    import copy

    import torch

    import squeezer as sq
    from squeezer.data import canonical_name

    model, source = load_model(args.model, args)
    shape = source["input_shape"]
    if not shape:
        raise UsageError(f"{args.model}: input shape unknown")
    if not 0 <= args.ratio < 1:
        raise UsageError(f"--ratio must be in [0, 1), got {args.ratio}")
    from squeezer.pruning.criteria import criterion_class

    x = torch.randn(1, *shape)
    ignored = tuple(s for s in (args.ignore or "").split(",") if s)
    needs_data = criterion_class(args.criterion).needs_data
    train = test = dataset = None
    if args.finetune_epochs or args.dataset or needs_data:
        dataset = canonical_name(args.dataset or source["meta"].get("dataset") or "mnist")
        train, test = _dataset(dataset, args.data_dir, limit=args.limit)
        check_fits(model, test.input_shape, test.num_classes, dataset)
    batches = None
    if needs_data:
        loader = sq.data.loader(train.without_augment(), 64, shuffle=True, seed=0)
        batches = [b for _, b in zip(range(8), loader, strict=False)]
    config = sq.pruning.ChannelPruning(
        ratio=args.ratio, criterion=args.criterion, exclude=ignored, round_to=args.round_to
    )
    pruned = copy.deepcopy(model)
    print(sq.prune_(pruned, config, x, data=batches))
    result: dict[str, Any] = {"ratio": args.ratio, "criterion": args.criterion}
    if train is not None and test is not None:
        result["top1_before"] = sq.evaluate(model, test)["top1"]
        result["top1_pruned"] = sq.evaluate(pruned, test)["top1"]
        sq.train.recalibrate_bn_(pruned, train)  # removed channels shifted the BN inputs
        result["top1_recalibrated"] = sq.evaluate(pruned, test)["top1"]
        if args.finetune_epochs:
            sq.fit(
                pruned,
                train,
                val=test,
                epochs=args.finetune_epochs,
                lr=args.lr,
                verbose=not args.quiet,
            )
        result["top1_after"] = sq.evaluate(pruned, test)["top1"]
        result["dataset"] = dataset
        info(
            f"top-1: {result['top1_before']:.4f} before, {result['top1_pruned']:.4f} right "
            f"after pruning, {result['top1_recalibrated']:.4f} with BatchNorm statistics "
            f"re-estimated, {result['top1_after']:.4f} after {args.finetune_epochs} "
            f"fine-tuning epoch(s)"
        )
    return _measure_and_save(
        args, pruned, model, x, result, dataset or source["meta"].get("dataset"), "pruned"
    )


def cmd_factorize(args: argparse.Namespace) -> int:
    import copy

    import torch

    import squeezer as sq
    from squeezer.data import canonical_name
    from squeezer.errors import ConfigError
    from squeezer.factorization import METHODS

    model, source = load_model(args.model, args)
    shape = source["input_shape"]
    if not shape:
        raise UsageError(f"{args.model}: input shape unknown")
    methods = [m.strip().lower() for m in args.method.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise UsageError(
            f"--method: unknown {', '.join(unknown) or 'empty'}; choose from {', '.join(METHODS)}"
        )
    patterns = tuple(s for s in (args.layers or "").split(",") if s)
    exclude = tuple(s for s in (args.exclude or "").split(",") if s)
    try:
        given = {"rank": args.rank} if args.rank is not None else {}
        configs = [
            METHODS[m](layers=patterns, exclude=exclude, force=args.force, **given) for m in methods
        ]
    except ConfigError as err:
        raise UsageError(str(err)) from None
    x = torch.randn(1, *shape)
    train = test = dataset = None
    if args.finetune_epochs or args.dataset or args.reconstruct:
        dataset = canonical_name(args.dataset or source["meta"].get("dataset") or "mnist")
        train, test = _dataset(dataset, args.data_dir, limit=args.limit)
        check_fits(model, test.input_shape, test.num_classes, dataset)
    calibration = None
    if args.reconstruct:
        loader = sq.data.loader(train.without_augment(), 64, shuffle=True, seed=0)
        calibration = [b for _, b in zip(range(args.reconstruct), loader, strict=False)]
    original = model
    model = copy.deepcopy(model)
    reports = []
    for config in configs:
        report = sq.factorize_(
            model,
            config,
            x,
            calibration=calibration,
            progress=lambda name, m=config.method: info(f"{m}: {name}"),
        )
        print(report)
        reports.append(report.to_dict())
    result: dict[str, Any] = {"methods": methods, "rank": args.rank, "factorization": reports}
    if train is not None and test is not None:
        result["top1_before"] = sq.evaluate(original, test)["top1"]
        result["top1_factorized"] = sq.evaluate(model, test)["top1"]
        if args.finetune_epochs:
            sq.fit(
                model, train, val=test, epochs=args.finetune_epochs, lr=args.lr,
                verbose=not args.quiet,
            )  # fmt: skip
        result["top1_after"] = sq.evaluate(model, test)["top1"]
        result["dataset"] = dataset
        info(
            f"top-1: {result['top1_before']:.4f} before, {result['top1_factorized']:.4f} right "
            f"after factorization, {result['top1_after']:.4f} after {args.finetune_epochs} "
            "fine-tuning epoch(s)"
        )
    dataset = dataset or source["meta"].get("dataset")
    return _measure_and_save(args, model, original, x, result, dataset, "factorized")
