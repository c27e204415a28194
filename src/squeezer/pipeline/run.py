"""Running a recipe: each stage on the model in turn, measured after every stage.

Sizes are real: each row's figure is the length of the file the coder writes for the model at
that stage (fixed-width fields before the ``code`` stage, then the final file), header
included; accuracy is measured on the test data after every stage, and after ``code`` on the
model reloaded from the file's bytes. A ``fine-tune`` stage is folded into the row of the
stage before it, as Deep Compression's tables do.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from squeezer.analysis import count_flops, time_models
from squeezer.coding import build, encode_model, parse
from squeezer.core import Report, baked_copy, zoo_name
from squeezer.errors import ConfigError
from squeezer.pipeline.recipe import Recipe, Stage, stage_verb
from squeezer.train import TrainConfig, evaluate
from squeezer.train import fit as _fit


@dataclass
class StageResult:
    name: str
    size_bytes: int
    compression_rate: float
    top1: float
    seconds: float
    flops: int | None = None  # one example's FLOPs of the model after the stage (dense count)
    latency_ms: float | None = None  # measured with ``latency_batch``, eager, alternately
    speedup: float | None = None  # with the model before the first stage


@dataclass
class RecipeResult(Report):
    """Everything a recipe run measured; :meth:`to_dict` is the JSON the CLI writes."""

    model: str
    baseline_bytes: int  # float32 parameters of the baseline
    top1_before: float
    top1_after: float
    size_bytes: int  # the last file written, header included
    stages: list[StageResult]
    layers: list[dict[str, Any]]
    sqz: bytes = field(repr=False, default=b"")
    seconds: float = 0.0
    recipe: str = ""
    reports: list[dict[str, Any]] = field(default_factory=list)

    @property
    def compression_rate(self) -> float:
        return self.baseline_bytes / self.size_bytes

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "recipe": self.recipe,
            "compression_rate": self.compression_rate,
            "size_bytes": self.size_bytes,
            "baseline_bytes": self.baseline_bytes,
            "top1_before": self.top1_before,
            "top1_after": self.top1_after,
            "error_before": 1 - self.top1_before,
            "error_after": 1 - self.top1_after,
            "stages": [vars(s) for s in self.stages],
            "layers": self.layers,
            "reports": self.reports,
            "seconds": self.seconds,
        }

    def format(self) -> str:
        return format_result(self)


def _float32_bytes(model: nn.Module) -> int:
    return 4 * sum(p.numel() for p in model.parameters())


def _train(recipe: Recipe, epochs: int, lr: float, **extra: float) -> TrainConfig:
    return TrainConfig(
        epochs=epochs, lr=lr, batch_size=recipe.batch_size, seed=recipe.seed, **extra
    )


def _batches(train: Any, n: int, batch_size: int, seed: int) -> list[tuple[torch.Tensor, ...]]:
    from squeezer.data import loader

    data = train.without_augment() if hasattr(train, "without_augment") else train
    if hasattr(data, "input_shape"):
        return [
            b
            for _, b in zip(
                range(n), loader(data, batch_size, shuffle=True, seed=seed), strict=False
            )
        ]
    return list(data)[:n]


def run_stage(
    model: nn.Module,
    stage: Stage,
    recipe: Recipe,
    train: Any,
    example_inputs: tuple[torch.Tensor, ...],
    verbose: bool = False,
    device: str | torch.device | None = None,
    teacher: nn.Module | None = None,
) -> dict[str, Any] | None:
    """Apply one stage to ``model`` in place; returns its report as plain data (if any).

    ``device``: where the training stages train (default: where the model is); the model
    goes back to where it was afterwards, so every other stage runs where it always does.
    ``teacher``: the model the ``distill`` stage learns from (``run_recipe`` passes the
    model as it was before the first stage).
    """
    from squeezer.core import apply
    from squeezer.pruning import iterative_prune

    home = next((p.device for p in model.parameters()), torch.device("cpu"))

    def fit(*args: Any, **kwargs: Any) -> Any:
        try:
            return _fit(*args, device=device, **kwargs)
        finally:
            model.to(home)

    o, c = stage.options, stage.config
    if stage.tag == "prune":
        if o["rounds"] == 1 and o["epochs"] == 0:
            return apply("prune", model, c).to_dict()
        try:
            rounds = iterative_prune(
                model, train, c, rounds=o["rounds"],
                train_config=_train(recipe, o["epochs"], o["lr"]), verbose=verbose,
                device=device,
            )  # fmt: skip
        finally:
            model.to(home)
        return {"method": "iterative magnitude pruning", "sparsity": dict(rounds[-1]["sparsity"])}
    if stage.tag == "sparse-vd":
        from squeezer.pruning.variational import vd_sparsity
        from squeezer.train import PenaltyWarmup, finish_

        apply("prune", model, c)
        config = _train(recipe, o["epochs"], o["lr"]).replace(
            optimizer="adam", weight_decay=0.0, schedule="constant"
        )
        fit(model, train, config, callbacks=[PenaltyWarmup(o["warmup"])], verbose=verbose)
        removed = vd_sparsity(model)
        finish_(model)
        return {"method": "sparse variational dropout", "sparsity": removed}
    if stage.tag == "soft-share":
        from squeezer.train import finish_

        apply("quantize", model, c)
        config = _train(recipe, o["epochs"], o["lr"]).replace(
            optimizer="adam", weight_decay=0.0, schedule="constant"
        )
        fit(model, train, config, verbose=verbose)
        clusters = {k.rsplit(".", 1)[0]: v for k, v in finish_(model).items()}
        return {"method": "soft weight-sharing", "layers": clusters}
    if stage.tag == "fold-dead":
        from squeezer.pruning import fold_dead_units_

        pairs = [(str(a), str(b)) for a, b in c.pairs]
        return {"method": "dead units folded", "pairs": fold_dead_units_(model, pairs)}
    if stage.tag == "fine-tune":
        extra = {"weight_decay": c.weight_decay, "momentum": c.momentum}
        fit(model, train, _train(recipe, c.epochs, c.lr, **extra), verbose=verbose)
        return None
    if stage.tag == "distill":
        from squeezer.distillation import distill

        if teacher is None:
            raise ConfigError("distill stage: no teacher (run_recipe passes the original model)")
        extra = {"weight_decay": o["weight_decay"], "momentum": o["momentum"]}
        try:
            distill(model, teacher, train, c, _train(recipe, o["epochs"], o["lr"], **extra),
                    verbose=verbose, device=device)  # fmt: skip
        finally:
            model.to(home)
            teacher.to(home)
        return {"method": "distillation from the original model", **c.to_dict()}
    if stage.tag == "code":
        return None  # run_recipe writes the file
    needs = getattr(c, "criterion", None)
    data = None
    if stage.tag == "quantize":  # activation ranges calibrated on training batches
        data = _batches(train, o["batches"], 64, recipe.seed)
    elif getattr(c, "needs_data", False):  # OBD, OBS: Hessians from training batches
        data = _batches(train, o.get("batches", 16), 64, recipe.seed)
    elif needs is not None:
        from squeezer.pruning.criteria import criterion_class

        if criterion_class(needs).needs_data:
            data = _batches(train, o.get("batches", 8), 64, recipe.seed)
    return apply(stage_verb(stage.tag), model, c, example_inputs, data=data).to_dict()


def run_recipe(
    model: nn.Module,
    train: Any,
    test: Any,
    recipe: Recipe,
    *,
    example_inputs: tuple[torch.Tensor, ...] | None = None,
    verbose: bool = False,
    log: Callable[[str], None] = lambda s: None,
    meta: dict[str, Any] | None = None,
    device: str | torch.device | None = None,
    latency_batch: int | None = None,
    min_run_time: float = 0.3,
) -> RecipeResult:
    """Run every stage of ``recipe`` on ``model`` (changed in place), measuring each.

    Args:
        model: a trained model (a zoo model or the user's own).
        train: training data for the stages that train or read data.
        test: the data accuracy is measured on.
        recipe: the stages.
        example_inputs: for the stages that trace (default: one zero example shaped like
            ``test``'s images).
        verbose: print a line per training epoch.
        log: receives one line per finished stage.
        meta: plain data to keep in the ``.sqz`` header.
        device: where the training stages train, e.g. ``"cuda"`` (default: where the model
            is); every other stage, and every measurement, runs where the model is.
        latency_batch: also time the model after every stage at this batch size (eager,
            all threads, alternately with the model before the first stage, medians of
            ``min_run_time`` seconds each), as it runs in PyTorch: masks baked, fake-quantized
            layers simulated (a deployed int8 model runs on an int8 backend instead).

    Returns:
        The result; ``result.sqz`` holds the bytes of the last ``code`` stage's file.
    """
    started = time.perf_counter()
    if example_inputs is None:
        example_inputs = (torch.zeros(1, *test.input_shape),)
    name = zoo_name(model) or type(model).__name__
    baseline_bytes = _float32_bytes(model)
    top1_before = evaluate(model, test)["top1"]
    original = baked_copy(model).eval()

    def counted(row: StageResult) -> StageResult:
        row.flops = int(count_flops(model, example_inputs)[0])
        if latency_batch:
            t = time_models([original, baked_copy(model).eval()], example_inputs, latency_batch,
                            torch.get_num_threads(), min_run_time=min_run_time)  # fmt: skip
            row.latency_ms, row.speedup = t[1].median_ms, t[0].median_ms / t[1].median_ms
        return row

    rows = [counted(StageResult("baseline (float32)", baseline_bytes, 1.0, top1_before, 0.0))]
    log(f"baseline: {baseline_bytes:,} bytes of float32 parameters, top-1 {top1_before:.4f}")
    reports: list[dict[str, Any]] = []
    data, contents, top1, fixed = b"", None, top1_before, None
    teacher = baked_copy(model).eval() if any(s.tag == "distill" for s in recipe.stages) else None
    for stage in recipe.stages:
        t0 = time.perf_counter()
        report = run_stage(
            model, stage, recipe, train, example_inputs, verbose, device, teacher=teacher
        )
        if report is not None:
            reports.append({"stage": stage.tag, **report})
        if stage.tag == "code":
            data = encode_model(model, stage.config.coding, {**(meta or {}), "recipe": recipe.name})
            contents = parse(data)
            fresh = None if zoo_name(model) else baked_copy(model)
            top1 = evaluate(build(contents, model=fresh), test)["top1"]  # what the file holds
            size = len(data)
        else:
            fixed = encode_model(model, "fixed")
            size = len(fixed)
            top1 = evaluate(model, test)["top1"]
        seconds = time.perf_counter() - t0
        if stage.tag in ("fine-tune", "distill") and len(rows) > 1:
            last = rows[-1]
            last.top1, last.seconds = top1, last.seconds + seconds
            last.size_bytes, last.compression_rate = size, baseline_bytes / size
            counted(last)
        else:
            rows.append(counted(
                StageResult(stage.label.strip(), size, baseline_bytes / size, top1, seconds)
            ))  # fmt: skip
        rate = baseline_bytes / size
        log(f"{stage.label.strip()}: {size:,} bytes ({rate:.1f}x), top-1 {top1:.4f}")
    if contents is None:
        data = encode_model(model, "huffman", {**(meta or {}), "recipe": recipe.name})
        contents = parse(data)
    layers = _layer_rows(model, contents, fixed)
    return RecipeResult(
        model=name,
        baseline_bytes=baseline_bytes,
        top1_before=top1_before,
        top1_after=top1,
        size_bytes=len(data),
        stages=rows,
        layers=layers,
        sqz=data,
        seconds=time.perf_counter() - started,
        recipe=recipe.name,
        reports=reports,
    )


def _layer_rows(model: nn.Module, contents: Any, fixed: bytes | None) -> list[dict[str, Any]]:
    """Per tensor: the final file's figures beside the fixed-width file's (``fixed``: the last
    stage's fixed-width encoding of the model as it is now, encoded here when absent)."""
    from squeezer.pruning import sparsity_of

    sparsity = sparsity_of(model)
    if fixed is None:
        fixed = encode_model(model, "fixed")
    fixed_rows = {r.name: r for r in parse(fixed).reports}
    layers = []
    for r in contents.reports:
        layers.append(
            {
                "name": r.name,
                "shape": r.shape,
                "encoding": r.encoding,
                "numel": r.numel,
                "nonzero": r.nonzero,
                "density": 1 - r.sparsity if r.numel else 1.0,
                "weight_bits": r.index_bits,
                "index_bits": r.gap_bits,
                "codebook": r.codebook,
                "bytes_fixed": fixed_rows[r.name].bytes if r.name in fixed_rows else r.bytes,
                "bytes": r.bytes,
                "bits_per_nonzero": 8 * r.bytes / max(r.nonzero, 1),
                "huffman_index_bits": r.index_avg_bits,
                "index_entropy": r.index_entropy,
                "huffman_gap_bits": r.gap_avg_bits,
                "gap_entropy": r.gap_entropy,
                "layer_sparsity": sparsity.get(r.name.rsplit(".", 1)[0]),
            }
        )
    return layers


def format_result(result: RecipeResult) -> str:
    """Tables like the paper's Table 1 and the per-stage and per-layer breakdowns."""
    out = [
        f"{'network':28s} {'top-1 error':>11s} {'size':>12s} {'compression':>11s}",
        f"{result.model + ' (float32)':28s} {100 * (1 - result.top1_before):10.2f}% "
        f"{result.baseline_bytes:>12,} {'':>11s}",
        f"{result.model + ' compressed':28s} {100 * (1 - result.top1_after):10.2f}% "
        f"{result.size_bytes:>12,} {result.compression_rate:10.1f}x",
        "",
        f"{'stage':22s} {'bytes':>12s} {'rate':>8s} {'top-1 error':>11s} {'FLOPs':>12s} "
        f"{'latency':>10s} {'speedup':>8s} {'time':>7s}",
    ]
    for s in result.stages:
        flops = f"{s.flops:,}" if s.flops is not None else "-"
        lat = f"{s.latency_ms:.2f} ms" if s.latency_ms is not None else "-"
        speed = f"{s.speedup:.2f}x" if s.speedup is not None else "-"
        out.append(
            f"{s.name:22s} {s.size_bytes:>12,} {s.compression_rate:7.1f}x "
            f"{100 * (1 - s.top1):10.2f}% {flops:>12s} {lat:>10s} {speed:>8s} {s.seconds:6.0f}s"
        )
    out += [
        "",
        f"{'tensor':12s} {'shape':>12s} {'density':>8s} {'w bits':>6s} {'idx bits':>8s} "
        f"{'huff w/ent':>11s} {'huff idx/ent':>12s} {'bytes':>8s} {'bits/nz':>8s}",
    ]
    for r in result.layers:
        if r["encoding"] == "raw":
            continue

        def pair(a: float | None, b: float | None) -> str:
            return "" if a is None or b is None else f"{a:.2f}/{b:.2f}"

        out.append(
            f"{r['name']:12s} {'x'.join(map(str, r['shape'])):>12s} {r['density']:8.3f} "
            f"{r['weight_bits'] or '':>6} {r['index_bits'] or '':>8} "
            f"{pair(r['huffman_index_bits'], r['index_entropy']):>11s} "
            f"{pair(r['huffman_gap_bits'], r['gap_entropy']):>12s} {r['bytes']:>8,} "
            f"{r['bits_per_nonzero']:8.2f}"
        )
    raw = sum(r["bytes"] for r in result.layers if r["encoding"] == "raw")
    out.append(f"(biases and other raw tensors: {raw:,} bytes; the rest of the file is its header)")
    return "\n".join(out)
