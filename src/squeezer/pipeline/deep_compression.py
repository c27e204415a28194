"""The Deep Compression pipeline (Han, Mao & Dally, ICLR 2016), end to end.

Three stages with fine-tuning between them: magnitude pruning with iterative retraining,
trained k-means weight sharing, then Huffman coding into a ``.sqz`` file. Sizes are real: each
stage's figure is the length of the file the coder writes for the model at that stage
(pruning only: sparse float32 values with fixed-width relative indices; + weight sharing:
fixed-width codebook indices; + Huffman: the final file), header included.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from squeezer.coding import build, encode_model, parse
from squeezer.config import Config, check
from squeezer.pruning import Magnitude, iterative_prune, sparsity_of
from squeezer.quantization import KMeansSharing, quantize_
from squeezer.train import TrainConfig, evaluate, fit

# Han et al. 2015, Tables 1-2: the fraction of weights *kept* per layer, turned into sparsity.
PAPER_SPARSITY = {
    "lenet300": {"fc1": 0.92, "fc2": 0.91, "fc3": 0.74},
    "lenet5": {"conv1": 0.34, "conv2": 0.88, "fc1": 0.92, "fc2": 0.81},
}


@dataclass(frozen=True)
class DeepCompression(Config):
    """Recipe of the Deep Compression pipeline; every field can come from a YAML file.

    Attributes:
        sparsity: layer name -> fraction of weights pruned (Han 2015's figures for the LeNets
            when empty and the model is one of them).
        default_sparsity: for weight layers not named in ``sparsity``.
        prune_rounds: prune-retrain rounds (sparsity raised evenly).
        prune_epochs: retraining epochs after each round.
        prune_lr: learning rate of the retraining.
        bits: layer name -> index width of weight sharing.
        conv_bits: index width of convolutions (the paper: 8).
        fc_bits: index width of fully connected layers (the paper: 5).
        bias_bits: also share biases with this many bits (None, as in the paper: float32).
        init: k-means initialization: linear, density or random.
        share_epochs: fine-tuning epochs of the shared centroids.
        share_lr: learning rate of that fine-tuning.
        baseline_epochs: training epochs when starting from a zoo name.
        baseline_lr: learning rate of that training.
        batch_size: images per step in every stage.
        seed: seed of every stage.
    """

    sparsity: dict[str, float] = field(default_factory=dict)
    default_sparsity: float = 0.9
    prune_rounds: int = 3
    prune_epochs: int = 4
    prune_lr: float = 0.01
    bits: dict[str, int] = field(default_factory=dict)
    conv_bits: int = 8
    fc_bits: int = 5
    bias_bits: int | None = None
    init: str = "linear"
    share_epochs: int = 3
    share_lr: float = 0.001
    baseline_epochs: int = 10
    baseline_lr: float = 0.05
    batch_size: int = 128
    seed: int = 0

    def validate(self) -> None:
        for name, s in [("default_sparsity", self.default_sparsity), *self.sparsity.items()]:
            check(0 <= s < 1, f"DeepCompression: sparsity of {name} must be in [0, 1)")
        check(self.prune_rounds >= 1, "DeepCompression: prune_rounds must be >= 1")
        for name in ("prune_epochs", "share_epochs", "baseline_epochs"):
            check(getattr(self, name) >= 0, f"DeepCompression: {name} must be >= 0")
        for name in ("prune_lr", "share_lr", "baseline_lr"):
            check(getattr(self, name) > 0, f"DeepCompression: {name} must be > 0")
        check(self.batch_size >= 1, "DeepCompression: batch_size must be >= 1")
        KMeansSharing(
            conv_bits=self.conv_bits, fc_bits=self.fc_bits, per_layer=self.bits, init=self.init
        )  # validates bits and init

    def pruning(self, model_name: str | None, layer_names: list[str]) -> Magnitude:
        per_layer = dict(PAPER_SPARSITY.get(model_name or "", {})) if not self.sparsity else {}
        per_layer.update(self.sparsity)
        for name in layer_names:
            per_layer.setdefault(name, self.default_sparsity)
        return Magnitude(per_layer=per_layer)

    def sharing(self) -> KMeansSharing:
        return KMeansSharing(
            conv_bits=self.conv_bits,
            fc_bits=self.fc_bits,
            per_layer=self.bits,
            bias_bits=self.bias_bits,
            init=self.init,
            seed=self.seed,
        )

    def train(self, epochs: int, lr: float, weight_decay: float = 5e-4) -> TrainConfig:
        return TrainConfig(
            epochs=epochs,
            lr=lr,
            batch_size=self.batch_size,
            seed=self.seed,
            weight_decay=weight_decay,
        )


@dataclass
class Stage:
    name: str
    size_bytes: int
    compression_rate: float
    top1: float
    seconds: float


@dataclass
class DeepCompressionResult:
    """Everything the pipeline measured; :meth:`to_dict` is the JSON the CLI writes."""

    model: str
    baseline_bytes: int  # float32 parameters of the baseline
    top1_before: float
    top1_after: float
    size_bytes: int  # the .sqz file, header included
    stages: list[Stage]
    layers: list[dict[str, Any]]
    sqz: bytes = field(repr=False, default=b"")
    seconds: float = 0.0

    @property
    def compression_rate(self) -> float:
        return self.baseline_bytes / self.size_bytes

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "compression_rate": self.compression_rate,
            "size_bytes": self.size_bytes,
            "baseline_bytes": self.baseline_bytes,
            "top1_before": self.top1_before,
            "top1_after": self.top1_after,
            "error_before": 1 - self.top1_before,
            "error_after": 1 - self.top1_after,
            "stages": [vars(s) for s in self.stages],
            "layers": self.layers,
            "seconds": self.seconds,
        }


def _float32_bytes(model: nn.Module) -> int:
    return 4 * sum(p.numel() for p in model.parameters())


def run_deep_compression(
    model: nn.Module,
    train: Any,
    test: Any,
    recipe: DeepCompression | None = None,
    *,
    verbose: bool = False,
    log: Callable[[str], None] = lambda s: None,
    meta: dict[str, Any] | None = None,
) -> DeepCompressionResult:
    """Prune, share and code ``model`` (changed in place), measuring every stage.

    Args:
        model: a trained model built by :func:`squeezer.models.create`.
        train: training data for the fine-tuning stages.
        test: the data accuracy is measured on.
        recipe: the pipeline's parameters.
        verbose: print a line per training epoch.
        log: receives one line per finished stage.
        meta: plain data to keep in the ``.sqz`` header.

    Returns:
        The result; ``result.sqz`` holds the bytes of the compressed file.
    """
    from squeezer.models import arch_of
    from squeezer.surgery import weight_layers

    recipe = recipe or DeepCompression()
    started = time.perf_counter()
    arch = arch_of(model) or {}
    baseline_bytes = _float32_bytes(model)
    top1_before = evaluate(model, test)["top1"]
    stages = [Stage("baseline (float32)", baseline_bytes, 1.0, top1_before, 0.0)]
    log(f"baseline: {baseline_bytes:,} bytes of float32 parameters, top-1 {top1_before:.4f}")

    t0 = time.perf_counter()
    names = [n for n, _ in weight_layers(model)]
    pruning = recipe.pruning(arch.get("name"), names)
    iterative_prune(
        model,
        train,
        pruning,
        rounds=recipe.prune_rounds,
        train_config=recipe.train(recipe.prune_epochs, recipe.prune_lr),
        verbose=verbose,
    )
    pruned_bytes = len(encode_model(model, "fixed"))
    top1 = evaluate(model, test)["top1"]
    stages.append(
        Stage(
            "pruning", pruned_bytes, baseline_bytes / pruned_bytes, top1, time.perf_counter() - t0
        )
    )
    log(f"pruning: {pruned_bytes:,} bytes ({baseline_bytes / pruned_bytes:.1f}x), top-1 {top1:.4f}")

    t0 = time.perf_counter()
    quantize_(model, recipe.sharing())
    # Centroids train without weight decay: decay would pull every shared value to zero.
    fit(
        model,
        train,
        recipe.train(recipe.share_epochs, recipe.share_lr, weight_decay=0.0),
        verbose=verbose,
    )
    shared_file = encode_model(model, "fixed")
    shared_bytes = len(shared_file)
    top1 = evaluate(model, test)["top1"]
    stages.append(
        Stage(
            "+ weight sharing",
            shared_bytes,
            baseline_bytes / shared_bytes,
            top1,
            time.perf_counter() - t0,
        )
    )
    log(
        f"+ weight sharing: {shared_bytes:,} bytes ({baseline_bytes / shared_bytes:.1f}x), "
        f"top-1 {top1:.4f}"
    )

    t0 = time.perf_counter()
    data = encode_model(model, "huffman", meta)
    contents = parse(data)
    reloaded = build(contents)
    top1_after = evaluate(reloaded, test)["top1"]  # accuracy of what the file really holds
    stages.append(
        Stage(
            "+ Huffman coding",
            len(data),
            baseline_bytes / len(data),
            top1_after,
            time.perf_counter() - t0,
        )
    )
    log(
        f"+ Huffman coding: {len(data):,} bytes ({baseline_bytes / len(data):.1f}x), "
        f"top-1 {top1_after:.4f}"
    )

    sparsity = sparsity_of(model)
    fixed = {r.name: r for r in parse(shared_file).reports}
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
                "bytes_fixed": fixed[r.name].bytes,
                "bytes": r.bytes,
                "bits_per_nonzero": 8 * r.bytes / max(r.nonzero, 1),
                "huffman_index_bits": r.index_avg_bits,
                "index_entropy": r.index_entropy,
                "huffman_gap_bits": r.gap_avg_bits,
                "gap_entropy": r.gap_entropy,
                "layer_sparsity": sparsity.get(r.name.rsplit(".", 1)[0]),
            }
        )
    return DeepCompressionResult(
        model=arch.get("name", type(model).__name__),
        baseline_bytes=baseline_bytes,
        top1_before=top1_before,
        top1_after=top1_after,
        size_bytes=len(data),
        stages=stages,
        layers=layers,
        sqz=data,
        seconds=time.perf_counter() - started,
    )


def format_result(result: DeepCompressionResult) -> str:
    """Tables like the paper's Table 1 and the per-stage and per-layer breakdowns."""
    out = [
        f"{'network':28s} {'top-1 error':>11s} {'size':>12s} {'compression':>11s}",
        f"{result.model + ' (float32)':28s} {100 * (1 - result.top1_before):10.2f}% "
        f"{result.baseline_bytes:>12,} {'':>11s}",
        f"{result.model + ' compressed':28s} {100 * (1 - result.top1_after):10.2f}% "
        f"{result.size_bytes:>12,} {result.compression_rate:10.1f}x",
        "",
        f"{'stage':22s} {'bytes':>12s} {'rate':>8s} {'top-1 error':>11s} {'time':>7s}",
    ]
    for s in result.stages:
        out.append(
            f"{s.name:22s} {s.size_bytes:>12,} {s.compression_rate:7.1f}x "
            f"{100 * (1 - s.top1):10.2f}% {s.seconds:6.0f}s"
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
