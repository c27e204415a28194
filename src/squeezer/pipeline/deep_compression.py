"""The Deep Compression pipeline (Han, Mao & Dally, ICLR 2016) as a recipe.

Three stages with fine-tuning between them: magnitude pruning with iterative retraining,
trained k-means weight sharing, then Huffman coding into a ``.sqz`` file; the shipped recipe
files ``deep-compression*.yaml`` spell it out. :class:`DeepCompression` is the older
parameter form of the same thing: :meth:`DeepCompression.to_recipe` turns it into a
:class:`~squeezer.pipeline.recipe.Recipe`, which :func:`~squeezer.pipeline.run.run_recipe`
runs like any other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from squeezer.config import Config, check
from squeezer.pipeline.recipe import Code, FineTune, Recipe, Stage
from squeezer.pipeline.run import RecipeResult, format_result, run_recipe
from squeezer.pruning import Magnitude
from squeezer.quantization import KMeansSharing
from squeezer.train import TrainConfig


def paper_sparsity(model_name: str | None) -> dict[str, float]:
    """Han et al. 2015's per-layer sparsities for a LeNet (Tables 1-2), read from the shipped
    recipe ``deep-compression-NAME.yaml`` (their one copy); empty for other models."""
    from squeezer.pipeline.recipe import BUILTIN, load_recipe

    if not model_name or not (BUILTIN / f"deep-compression-{model_name}.yaml").is_file():
        return {}
    prune = next(
        s for s in load_recipe(f"deep-compression-{model_name}").stages if s.tag == "prune"
    )
    return dict(prune.config.per_layer)


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
        per_layer = paper_sparsity(model_name) if not self.sparsity else {}
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

    def to_recipe(self, model_name: str | None, layer_names: list[str]) -> Recipe:
        """This pipeline as a recipe for a model (its zoo name picks the paper's sparsities)."""
        return Recipe(
            name="deep-compression",
            stages=(
                Stage(
                    "prune",
                    self.pruning(model_name, layer_names),
                    {"rounds": self.prune_rounds, "epochs": self.prune_epochs, "lr": self.prune_lr},
                ),
                Stage("share", self.sharing()),
                Stage(
                    "fine-tune",
                    FineTune(epochs=self.share_epochs, lr=self.share_lr, weight_decay=0.0),
                ),
                Stage("code", Code("huffman")),
            ),
            batch_size=self.batch_size,
            seed=self.seed,
        )


DeepCompressionResult = RecipeResult


def run_deep_compression(
    model: nn.Module,
    train: Any,
    test: Any,
    recipe: DeepCompression | None = None,
    *,
    verbose: bool = False,
    log: Callable[[str], None] = lambda s: None,
    meta: dict[str, Any] | None = None,
) -> RecipeResult:
    """Prune, share and code ``model`` (changed in place), measuring every stage.

    Args:
        model: a trained model.
        train: training data for the fine-tuning stages.
        test: the data accuracy is measured on.
        recipe: the pipeline's parameters.
        verbose: print a line per training epoch.
        log: receives one line per finished stage.
        meta: plain data to keep in the ``.sqz`` header.

    Returns:
        The result; ``result.sqz`` holds the bytes of the compressed file.
    """
    from squeezer.core import weight_layers, zoo_name

    recipe = recipe or DeepCompression()
    names = [n for n, _ in weight_layers(model)]
    steps = recipe.to_recipe(zoo_name(model), names)
    return run_recipe(model, train, test, steps, verbose=verbose, log=log, meta=meta)


__all__ = [
    "DeepCompression",
    "DeepCompressionResult",
    "format_result",
    "paper_sparsity",
    "run_deep_compression",
]
