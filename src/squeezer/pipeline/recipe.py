"""Recipes: an ordered list of tagged stages, validated before anything runs.

A recipe file (YAML, read with ``yaml.safe_load``; it can never run code)::

    name: deep-compression
    batch_size: 128
    stages:
      - prune: {per_layer: {fc1: 0.92, fc2: 0.91, fc3: 0.74}, rounds: 3, epochs: 4, lr: 0.01}
      - share: {fc_bits: 5, conv_bits: 8}
      - fine-tune: {epochs: 3, lr: 0.001, weight_decay: 0}
      - code: {coding: huffman}

Each stage is one tag and the fields of that stage's config:

- ``prune``: :class:`~squeezer.pruning.Magnitude` fields plus ``rounds``, ``epochs``, ``lr``
  (iterative pruning with retraining);
- ``channel-prune``: :class:`~squeezer.pruning.ChannelPruning` plus ``batches`` (of data for
  the criteria that read it);
- ``factorize``: ``method`` (``tucker``, ``svd``, ...) plus that method's config fields;
- ``share``: :class:`~squeezer.quantization.KMeansSharing`;
- ``quantize``: ``method`` (``qat``, ``lsq``, ``dorefa``, ``fixed``) plus that method's config
  fields (``bits``, ``per_layer``...) and ``batches`` (calibration batches, default 8); a
  ``fine-tune`` stage after it is quantization-aware training, and ``code`` packs the weights
  at their bit-width;
- ``obd`` / ``obs``: :class:`~squeezer.pruning.OBD` / :class:`~squeezer.pruning.OBS` (second-
  order unstructured pruning, masks as after ``prune``) plus ``batches`` (of 64 training
  examples the Hessians are computed from, default 16);
- ``separable`` / ``crelu-pairs``: :class:`~squeezer.compact.DepthwiseSeparable` /
  :class:`~squeezer.compact.CReLUPairs` (trained convs refitted as depthwise-separable pairs
  or CReLU pairs by least squares on their inputs) plus ``batches`` (of 64 training examples
  the fit reads, default 8); follow with ``distill`` or ``fine-tune`` to recover;
- ``sparse-vd``: :class:`~squeezer.pruning.SparseVD` plus ``epochs``, ``lr`` and ``warmup``
  (epochs of KL warm-up): variational training with Adam, then the weights whose log alpha
  exceeds the threshold are removed (a mask, as after ``prune``);
- ``soft-share``: :class:`~squeezer.quantization.SoftWeightSharing` plus ``epochs`` and
  ``lr``: retraining under the Gaussian-mixture prior with Adam, then every weight snapped to
  its component's mean (shared values, as after ``share``);
- ``fold-dead``: :class:`~squeezer.pruning.dead_units.FoldDeadUnits`: hidden units of
  Linear pairs left with no input (folded into the next bias) or no output, zeroed exactly;
- ``fine-tune``: :class:`FineTune`, training the current model;
- ``distill``: :class:`~squeezer.distillation.KD` (``temperature``, ``alpha``) plus
  ``epochs``, ``lr``, ``weight_decay`` and ``momentum``: fine-tuning with the model as it was
  before the recipe's first stage as the teacher (recovery after compression);
- ``code``: :class:`Code`, writing the ``.sqz`` file and measuring the model it holds.

Later families add their stage with :func:`register_stage`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from squeezer.config import Config, check
from squeezer.errors import ConfigError


@dataclass(frozen=True)
class FineTune(Config):
    """Train the model as it is now (masks and shared weights held).

    Attributes:
        epochs: passes over the training data.
        lr: peak learning rate.
        weight_decay: L2 decay (0 for shared centroids: decay pulls them to zero).
        momentum: SGD momentum.
    """

    epochs: int = 1
    lr: float = 0.01
    weight_decay: float = 5e-4
    momentum: float = 0.9

    def validate(self) -> None:
        check(isinstance(self.epochs, int) and self.epochs >= 0, "fine-tune: epochs must be >= 0")
        check(self.lr > 0, "fine-tune: lr must be > 0")
        check(self.weight_decay >= 0, "fine-tune: weight_decay must be >= 0")


@dataclass(frozen=True)
class Code(Config):
    """Encode the model into a ``.sqz`` file and measure the model the file holds.

    Attributes:
        coding: ``"huffman"`` or ``"fixed"`` (fixed-width indices).
    """

    coding: str = "huffman"

    def validate(self) -> None:
        check(self.coding in ("huffman", "fixed"), "code: coding must be huffman or fixed")


@dataclass(frozen=True)
class Stage:
    """One validated stage: its tag, its method config, and stage options."""

    tag: str
    config: Config
    options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        fields = self.config.to_dict()
        method = getattr(type(self.config), "method", None)
        if self.tag == "factorize" and isinstance(method, str):
            fields = {"method": method, **fields}
        return {self.tag: {**fields, **self.options}}

    @property
    def label(self) -> str:
        if self.tag == "factorize":
            return f"factorization ({type(self.config).__name__})"
        if self.tag == "code":
            return f"+ {'Huffman' if self.config.coding == 'huffman' else 'fixed-width'} coding"
        return _LABELS.get(self.tag, self.tag)


_LABELS = {
    "prune": "pruning",
    "sparse-vd": "sparse VD",
    "soft-share": "+ soft weight-sharing",
    "channel-prune": "channel pruning",
    "share": "+ weight sharing",
    "fine-tune": "  fine-tuning",
    "distill": "  fine-tuning with the original as teacher",
}

# tag -> (parse fields into (config, options), option names with their defaults)
_PARSERS: dict[str, Callable[[dict[str, Any]], tuple[Config, dict[str, Any]]]] = {}


# tag -> the verb whose handler runs the stage's config (``sq.core.apply``)
STAGE_VERBS: dict[str, str] = {}


def register_stage(
    tag: str,
    config_type: type[Config],
    options: Mapping[str, Any] | None = None,
    *,
    verb: str | None = None,
) -> None:
    """Make ``tag`` a stage whose fields are ``config_type``'s plus ``options`` (defaults).

    With ``verb``, the stage runs the handler registered for ``verb`` and the config's type
    (``squeezer.core.register_handler``): a new family's stage is one line.
    """
    defaults = dict(options or {})
    if verb is not None:
        STAGE_VERBS[tag] = verb

    def parse(fields: dict[str, Any]) -> tuple[Config, dict[str, Any]]:
        opts = {k: fields.pop(k, v) for k, v in defaults.items()}
        return config_type.from_dict(fields), opts

    _PARSERS[tag] = parse


def _factorize(fields: dict[str, Any]) -> tuple[Config, dict[str, Any]]:
    from squeezer.factorization import METHODS

    method = fields.pop("method", None)
    if method not in METHODS:
        raise ConfigError(f"factorize: method must be one of {', '.join(METHODS)} (got {method!r})")
    return METHODS[method].from_dict(fields), {}


KBIT_METHODS = {
    "qat": "QAT", "lsq": "LSQ", "dorefa": "DoReFa", "fixed": "FixedPoint",
    "binaryconnect": "BinaryConnect", "binarynet": "BinaryNet", "xnor": "XNOR", "lab": "LAB",
    "twn": "TWN",
    "ttq": "TTQ", "ternaryconnect": "TernaryConnect", "pq": "ProductQuantization",
    "hashednets": "HashedNets",
}  # fmt: skip


def _quantize(fields: dict[str, Any]) -> tuple[Config, dict[str, Any]]:
    import squeezer.quantization as q

    method = fields.pop("method", None)
    if method not in KBIT_METHODS:
        raise ConfigError(
            f"quantize: method must be one of {', '.join(KBIT_METHODS)} (got {method!r})"
        )
    batches = fields.pop("batches", 8)
    check(isinstance(batches, int) and batches >= 1, "quantize: batches must be >= 1")
    return getattr(q, KBIT_METHODS[method]).from_dict(fields), {"batches": batches}


def _builtin_stages() -> None:
    if _PARSERS:
        return
    from squeezer.pruning import ChannelPruning, Magnitude, SparseVD
    from squeezer.quantization import KMeansSharing, SoftWeightSharing

    register_stage("prune", Magnitude, {"rounds": 1, "epochs": 0, "lr": 0.01})
    register_stage("channel-prune", ChannelPruning, {"batches": 8}, verb="prune")
    from squeezer.pruning import OBD, OBS

    register_stage("obd", OBD, {"batches": 16}, verb="prune")
    register_stage("obs", OBS, {"batches": 16}, verb="prune")
    from squeezer.compact import CReLUPairs, DepthwiseSeparable

    register_stage("separable", DepthwiseSeparable, {"batches": 8}, verb="convert")
    register_stage("crelu-pairs", CReLUPairs, {"batches": 8}, verb="convert")
    register_stage("sparse-vd", SparseVD, {"epochs": 10, "lr": 0.001, "warmup": 2.0})
    _PARSERS["factorize"] = _factorize
    STAGE_VERBS["factorize"] = "factorize"
    register_stage("share", KMeansSharing, verb="quantize")
    register_stage("soft-share", SoftWeightSharing, {"epochs": 10, "lr": 0.0005})
    _PARSERS["quantize"] = _quantize
    STAGE_VERBS["quantize"] = "quantize"
    from squeezer.pruning.dead_units import FoldDeadUnits

    register_stage("fold-dead", FoldDeadUnits)
    register_stage("fine-tune", FineTune)
    from squeezer.distillation import KD

    register_stage("distill", KD, {"epochs": 1, "lr": 0.01, "weight_decay": 5e-4, "momentum": 0.9})
    register_stage("code", Code)


def stage_verb(tag: str) -> str:
    """The verb that runs stage ``tag`` (for the stages that are one method)."""
    _builtin_stages()
    if tag not in STAGE_VERBS:
        raise ConfigError(f"stage {tag!r} is not run by a verb")
    return STAGE_VERBS[tag]


def list_stages() -> list[str]:
    """The stage tags a recipe may use."""
    _builtin_stages()
    return list(_PARSERS)


def parse_stage(entry: Any, where: str) -> Stage:
    """One stage from its plain-data form ``{tag: {fields}}``."""
    _builtin_stages()
    if not isinstance(entry, Mapping) or len(entry) != 1:
        raise ConfigError(f"{where}: a stage is one tag with its fields, e.g. {{share: {{}}}}")
    ((tag, fields),) = entry.items()
    if tag not in _PARSERS:
        raise ConfigError(f"{where}: unknown stage {tag!r} (known: {', '.join(_PARSERS)})")
    if fields is None:
        fields = {}
    if not isinstance(fields, Mapping):
        raise ConfigError(f"{where} ({tag}): the fields must be a mapping")
    try:
        config, options = _PARSERS[tag](dict(fields))
    except ConfigError as err:
        raise ConfigError(f"{where} ({tag}): {err}") from None
    warmup = options.get("warmup")
    if warmup is not None and not (isinstance(warmup, int | float) and warmup >= 0):
        raise ConfigError(f"{where} ({tag}): warmup must be >= 0")
    for key in ("rounds", "epochs", "batches"):
        value = options.get(key)
        least = 1 if key == "rounds" else 0
        if value is not None and (not isinstance(value, int) or value < least):
            raise ConfigError(f"{where} ({tag}): {key} must be an integer >= {least}")
    if "lr" in options and not (isinstance(options["lr"], int | float) and options["lr"] > 0):
        raise ConfigError(f"{where} ({tag}): lr must be > 0")
    return Stage(str(tag), config, options)


@dataclass(frozen=True)
class Recipe:
    """A named, validated list of stages.

    Attributes:
        name: shown in tables and written into the file's header.
        stages: the stages, in order.
        batch_size: images per step in every training stage.
        seed: seed of every training stage.
    """

    name: str
    stages: tuple[Stage, ...]
    batch_size: int = 128
    seed: int = 0

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str = "recipe") -> Recipe:
        if not isinstance(values, Mapping):
            raise ConfigError(f"{source}: a recipe is a mapping with a 'stages' list")
        known = {"name", "stages", "batch_size", "seed"}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"{source}: unknown key(s) {', '.join(map(repr, unknown))}; "
                f"valid keys: {', '.join(sorted(known))}"
            )
        stages = values.get("stages")
        if not isinstance(stages, list) or not stages:
            raise ConfigError(f"{source}: 'stages' must be a non-empty list")
        parsed = tuple(parse_stage(s, f"{source}: stage {i + 1}") for i, s in enumerate(stages))
        batch_size, seed = values.get("batch_size", 128), values.get("seed", 0)
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"{source}: batch_size must be a positive integer")
        if not isinstance(seed, int):
            raise ConfigError(f"{source}: seed must be an integer")
        return cls(str(values.get("name") or source), parsed, batch_size, seed)

    @classmethod
    def from_yaml(cls, path: str | Path) -> Recipe:
        """Read and validate a recipe file."""
        path = Path(path)
        try:
            values = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: invalid YAML: {exc}") from None
        values = values or {}
        if isinstance(values, Mapping) and "name" not in values:
            values = {**values, "name": path.stem}
        return cls.from_dict(values, str(path))

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "stages": [s.to_dict() for s in self.stages],
        }

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def replace(self, **changes: Any) -> Recipe:
        return dataclasses.replace(self, **changes)


BUILTIN = Path(__file__).resolve().parent / "recipes"


def builtin_recipes() -> list[str]:
    """Names of the recipes shipped with squeezer (``squeezer run NAME``)."""
    return sorted(p.stem for p in BUILTIN.glob("*.yaml"))


def load_recipe(name_or_path: str | Path) -> Recipe:
    """A recipe file, or a shipped recipe by name (see :func:`builtin_recipes`)."""
    path = Path(name_or_path)
    if path.is_file():
        return Recipe.from_yaml(path)
    shipped = BUILTIN / f"{name_or_path}.yaml"
    if shipped.is_file():
        return Recipe.from_yaml(shipped)
    raise ConfigError(
        f"{name_or_path}: neither a recipe file nor a shipped recipe "
        f"(shipped: {', '.join(builtin_recipes())})"
    )
