"""Layer sensitivity analysis (A2): each layer compressed alone at a range of settings.

For every selected layer and every value of one setting (sparsity, channel ratio, rank, bits),
a copy of the model has only that layer compressed by the method's own handler, and is
evaluated on a validation split. The result shows which layers tolerate compression and which
do not: the input to choosing per-layer settings by hand or by search (Han et al. 2015, Fig. 6;
Li et al. 2017, Fig. 2)::

    scan = sq.automation.sensitivity(model, sq.pruning.Magnitude(), [0.5, 0.8, 0.9], val)
    print(scan)                     # a table: layers x values, accuracy drop
    scan.plot("sensitivity.png")    # one curve per layer

Any method config with a ``layers`` selection works; the setting varied is its usual one
(:data:`SETTINGS`) unless ``setting`` names another field.
"""

from __future__ import annotations

import copy
import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor, nn
from tqdm.auto import tqdm

from squeezer.analysis import count_flops, count_nonzero, count_params
from squeezer.core import LayerSelection, Report
from squeezer.core.methods import apply, list_methods
from squeezer.errors import ConfigError, SqueezerError
from squeezer.train import evaluate

# config class name -> the field a sensitivity scan varies by default
SETTINGS = {
    "Magnitude": "sparsity",
    "OBD": "sparsity",
    "OBS": "sparsity",
    "ChannelPruning": "ratio",
    "Factorization": "rank",
    "KBit": "bits",
    "KMeansSharing": "bits",
}


# the command line's method names: (config builder, default values)
SHORTHANDS = {
    "sparsity": "magnitude pruning (Magnitude): fraction of the layer's weights zeroed",
    "channels": "channel pruning (ChannelPruning, --criterion): fraction of output channels "
    "removed",
    "rank": "factorization (--factorization, SVD for Linear layers, Tucker-2 for convs by "
    "default): fraction of the full rank kept",
    "bits": "k-bit quantization (QAT, post-training, weights and layer inputs): bits",
    "share": "k-means weight sharing (KMeansSharing): bits of the codebook index",
}
DEFAULT_VALUES = {
    "sparsity": [0.3, 0.5, 0.7, 0.8, 0.9, 0.95],
    "channels": [0.25, 0.5, 0.75],
    "rank": [0.75, 0.5, 0.25, 0.1],
    "bits": [8, 6, 4, 3, 2],
    "share": [8, 6, 5, 4, 3, 2],
}


def method_config(
    name: str, model: nn.Module | None = None, *, criterion: str = "l1",
    factorization: str | None = None,
) -> LayerSelection:  # fmt: skip
    """The config a shorthand (:data:`SHORTHANDS`) stands for, at its first default value.

    ``rank`` without ``factorization`` is ``tucker`` where ``model`` has convolutions and
    ``svd`` otherwise.

    Raises:
        ConfigError: an unknown name.
    """
    from squeezer.factorization import METHODS
    from squeezer.pruning import ChannelPruning, Magnitude
    from squeezer.quantization import QAT, KMeansSharing

    first = DEFAULT_VALUES.get(name, [None])[0]
    if name == "sparsity":
        return Magnitude(sparsity=first)
    if name == "channels":
        return ChannelPruning(ratio=first, criterion=criterion)
    if name == "rank":
        if factorization is None:
            convs = model is not None and any(isinstance(m, nn.Conv2d) for m in model.modules())
            factorization = "tucker" if convs else "svd"
        if factorization not in METHODS:
            raise ConfigError(f"sensitivity: unknown factorization {factorization!r} (known: "
                              f"{', '.join(METHODS)})")  # fmt: skip
        return METHODS[factorization](rank=first)
    if name == "bits":
        return QAT(bits=first, first_last_bits=None)
    if name == "share":
        return KMeansSharing(bits=first)
    raise ConfigError(f"sensitivity: unknown method {name!r} (known: {', '.join(SHORTHANDS)})")


def verb_of(config: object) -> str:
    """The verb (``prune``, ``quantize``, ``factorize``, ``convert``) whose handler takes
    ``config``.

    Raises:
        ConfigError: no verb has a handler for it.
    """
    for verb, types in list_methods().items():
        if any(isinstance(config, t) for t in types):
            return verb
    raise ConfigError(f"{type(config).__name__} is no compression method")


def default_setting(config: object) -> str:
    """The field a scan of ``config`` (a method config or its class) varies
    (:data:`SETTINGS`, along the class hierarchy)."""
    kind = config if isinstance(config, type) else type(config)
    for cls in kind.__mro__:
        if cls.__name__ in SETTINGS:
            return SETTINGS[cls.__name__]
    raise ConfigError(f"sensitivity: say which field of {kind.__name__} to vary (setting=...)")


@dataclass
class Point:
    """One layer compressed alone at one value."""

    value: Any
    top1: float | None = None
    loss: float | None = None
    params: int | None = None
    nonzero: int | None = None
    flops: int | None = None
    error: str | None = None  # why this point could not be made

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class SensitivityReport(Report):
    """The scan: the model's own accuracy and, per layer, one :class:`Point` per value."""

    method: str
    setting: str
    values: list[Any]
    baseline: Point
    layers: dict[str, list[Point]] = field(default_factory=dict)
    examples: int = 0

    def drop(self, layer: str, value: Any) -> float | None:
        """Top-1 accuracy lost (in points, 0-100) by compressing ``layer`` alone to
        ``value``; None where that point failed."""
        point = next(p for p in self.layers[layer] if p.value == value)
        if point.top1 is None or self.baseline.top1 is None:
            return None
        return 100.0 * (self.baseline.top1 - point.top1)

    def tolerant(self, max_drop: float) -> dict[str, Any]:
        """Per layer, the most aggressive value (the last in ``values`` order) whose drop
        stays within ``max_drop`` points, and every value before it too; None where even
        the first value costs more."""
        out: dict[str, Any] = {}
        for name in self.layers:
            best = None
            for v in self.values:
                d = self.drop(name, v)
                if d is None or d > max_drop:
                    break
                best = v
            out[name] = best
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "setting": self.setting,
            "values": self.values,
            "examples": self.examples,
            "baseline": self.baseline.to_dict(),
            "layers": {
                name: [{**p.to_dict(), "drop": self.drop(name, p.value)} for p in points]
                for name, points in self.layers.items()
            },
        }

    def format(self) -> str:
        width = max([len(n) for n in self.layers] + [5])
        head = "".join(f"{_fmt(v):>10}" for v in self.values)
        base = self.baseline.top1 or 0.0
        lines = [
            f"sensitivity of {self.method} ({self.setting}) on {self.examples} examples: "
            f"top-1 drop in points from {100 * base:.2f}%",
            f"  {'layer':<{width}}{head}",
        ]
        for name, points in self.layers.items():
            cells = []
            for p in points:
                d = self.drop(name, p.value)
                cells.append(f"{'n/a' if d is None else f'{d:+.2f}':>10}")
            lines.append(f"  {name:<{width}}" + "".join(cells))
        failed = {(n, p.error) for n, ps in self.layers.items() for p in ps if p.error}
        for name, why in sorted(failed):
            lines.append(f"  n/a {name}: {why}")
        return "\n".join(lines)

    def plot(self, path: str | Path, title: str | None = None) -> Path:
        """One curve per layer (accuracy against the setting) as a PNG (matplotlib, no
        display needed)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        numeric = all(isinstance(v, int | float) for v in self.values)
        xs = self.values if numeric else list(range(len(self.values)))
        fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
        for name, points in self.layers.items():
            ys = [100 * p.top1 if p.top1 is not None else math.nan for p in points]
            ax.plot(xs, ys, marker="o", label=name)
        if self.baseline.top1 is not None:
            ax.axhline(100 * self.baseline.top1, color="gray", linestyle="--", label="model")
        if not numeric:
            ax.set_xticks(xs, [str(v) for v in self.values])
        ax.set_xlabel(self.setting)
        ax.set_ylabel("top-1 accuracy (%)")
        ax.set_title(title or f"sensitivity: {self.method}, each layer alone")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2 if len(self.layers) > 8 else 1)
        fig.tight_layout()
        path = Path(path)
        fig.savefig(path)
        plt.close(fig)
        return path


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def sensitivity(
    model: nn.Module,
    config: LayerSelection | type[LayerSelection],
    values: Sequence[Any],
    val: Any,
    *,
    setting: str | None = None,
    example_inputs: Tensor | tuple[Tensor, ...] | None = None,
    data: Iterable[Any] | None = None,
    layers: Sequence[str] | None = None,
    batch_size: int = 500,
    progress: bool | None = None,
) -> SensitivityReport:
    """Compress each layer alone at each of ``values`` and evaluate on ``val``.

    Args:
        model: the trained network (left unchanged; every point works on a copy).
        config: the method, e.g. ``Magnitude``, ``ChannelPruning(criterion="l1")``,
            ``SVD(force=True)``, ``QAT(first_last_bits=None)``: a config, whose other fields
            are kept and whose ``layers`` selection (when given) picks the layers scanned, or
            a config class (its defaults).
        values: the settings to try, in order of increasing compression.
        val: the validation data (an ImageDataset or batches), held out from training.
        setting: the field of ``config`` to vary (default: :func:`default_setting`).
        example_inputs: inputs for tracing and FLOPs (default: one zero example of the
            model's ``input_shape``).
        data: batches for methods that read data (calibration, Hessians, fits).
        layers: names to scan (default: every layer ``config`` selects in ``model``).
        batch_size: evaluation batch size.
        progress: a progress bar (default: when standard error is a terminal).

    Returns:
        A :class:`SensitivityReport`; a point a method cannot make (a layer with no channel
        group, a rank above the layer's) is kept with its reason instead of an accuracy.

    Raises:
        ConfigError: ``values`` empty, ``setting`` not a field of ``config``, or no layer to
            scan.
    """
    if not values:
        raise ConfigError("sensitivity: give at least one value")
    setting = setting or default_setting(config)
    if isinstance(config, type):
        fields = getattr(config, "__dataclass_fields__", {})
        if setting not in fields:
            raise ConfigError(f"sensitivity: {config.__name__} has no field {setting!r}")
        config = config(**{setting: values[0]})
    if setting not in {f for f in getattr(config, "__dataclass_fields__", {})}:
        raise ConfigError(f"sensitivity: {type(config).__name__} has no field {setting!r}")
    verb = verb_of(config)
    if example_inputs is None and getattr(model, "input_shape", None):
        import torch

        param = next(model.parameters(), None)
        device = param.device if param is not None else None
        example_inputs = torch.zeros(1, *model.input_shape, device=device)
    inputs = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
    names = list(layers) if layers else [n for n, _ in config.select(model)]
    known = dict(model.named_modules())
    missing = [n for n in names if n not in known]
    if missing:
        raise ConfigError(f"sensitivity: no layer named {', '.join(missing)} in the model")
    if not names:
        raise ConfigError(f"sensitivity: {type(config).__name__} selects no layer of the model")
    data = list(data) if data is not None else None

    def point(m: nn.Module, value: Any) -> tuple[Point, int]:
        r = evaluate(m, val, batch_size=batch_size, topk=(1,), progress=False)
        p = Point(value, top1=r["top1"], loss=r["loss"], params=count_params(m),
                  nonzero=count_nonzero(m))  # fmt: skip
        if example_inputs is not None:
            p.flops = count_flops(m, inputs)[0]
        return p, int(r["n"])

    baseline, examples = point(model, None)
    report = SensitivityReport(type(config).__name__, setting, list(values), baseline,
                               examples=examples)  # fmt: skip
    show = sys.stderr.isatty() if progress is None else progress
    bar = tqdm(total=len(names) * len(values), desc=f"sensitivity ({setting})", unit="point",
               disable=not show, leave=False)  # fmt: skip
    for name in names:
        points = []
        for value in values:
            bar.set_postfix_str(f"{name} {_fmt(value)}")
            m = copy.deepcopy(model)
            try:
                changes: dict[str, Any] = {setting: value, "layers": (name,)}
                if "per_layer" in config.__dataclass_fields__:
                    changes["per_layer"] = {}
                one = config.replace(**changes)
                apply(verb, m, one, example_inputs, data=data)
                points.append(point(m, value)[0])
            except (SqueezerError, ValueError) as err:
                points.append(Point(value, error=str(err).splitlines()[0][:200]))
            bar.update()
        report.layers[name] = points
    bar.close()
    return report
