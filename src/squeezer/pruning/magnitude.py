"""Magnitude pruning (Han, Pool, Tran & Dally 2015, "Learning both Weights and Connections").

Weights whose magnitude falls below a threshold are removed: set to zero and held there by a
mask while the network retrains. The threshold is chosen per layer (a target sparsity, or
``quality`` times the standard deviation of the layer's weights, as in the paper) or once for
all layers (a global target sparsity).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from squeezer.config import check
from squeezer.core import (
    COMPRESSIBLE,
    LayerSelection,
    PerLayerReport,
    current_weight,
    find_parametrization,
    register_handler,
    weight_layers,
)
from squeezer.errors import ModelError


class WeightMask(nn.Module):
    """Parametrization ``weight = original * mask``: pruned weights stay exactly zero.

    The gradient reaching a pruned entry of ``original`` is zero, and whatever momentum or
    weight decay do to that entry, the weight the layer uses is ``0 * original = 0``.
    """

    def __init__(self, mask: Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask.to(torch.bool))

    def forward(self, weight: Tensor) -> Tensor:
        return weight * self.mask


@dataclass(frozen=True)
class Magnitude(LayerSelection):
    """Which weights magnitude pruning removes.

    Give one of ``sparsity`` (a fraction to remove, per layer or global), ``quality`` (per-layer
    threshold = quality x std of the layer's weights) or ``per_layer`` (a sparsity per layer
    name; ``sparsity``, if also given, applies to the layers not named).

    Attributes:
        sparsity: fraction of weights to remove, in [0, 1).
        quality: Han et al.'s quality parameter (threshold in standard deviations).
        per_layer: layer name or pattern -> sparsity.
        scope: ``"layer"`` (each layer reaches ``sparsity``) or ``"global"`` (one threshold
            across all layers, which then end up with different sparsities).
        layers, exclude, layer_types: which layers (see :class:`squeezer.core.LayerSelection`;
            by default every Linear and Conv).
    """

    sparsity: float | None = None
    quality: float | None = None
    per_layer: dict[str, float] = field(default_factory=dict)
    scope: str = "layer"

    def validate(self) -> None:
        super().validate()
        given = [self.sparsity is not None, self.quality is not None, bool(self.per_layer)]
        check(any(given), "Magnitude: give sparsity, quality or per_layer")
        check(
            not (self.quality is not None and (self.sparsity is not None or self.per_layer)),
            "Magnitude: quality cannot be combined with sparsity or per_layer",
        )
        for name, s in [("sparsity", self.sparsity), *self.per_layer.items()]:
            check(s is None or 0 <= s < 1, f"Magnitude: sparsity of {name} must be in [0, 1)")
        check(self.quality is None or self.quality >= 0, "Magnitude: quality must be >= 0")
        check(self.scope in ("layer", "global"), "Magnitude: scope must be 'layer' or 'global'")
        check(
            self.scope == "layer" or (self.sparsity is not None and not self.per_layer),
            "Magnitude: scope='global' needs one sparsity and no per_layer",
        )

    def target(self, name: str) -> float | None:
        """The sparsity asked of layer ``name`` (None: leave it, or use ``quality``)."""
        return self.value_for(name, self.sparsity)


def _threshold_for(weight: Tensor, sparsity: float) -> float:
    k = round(sparsity * weight.numel())
    if k <= 0:
        return -1.0  # keep everything
    return float(weight.abs().flatten().kthvalue(k).values)


def require_plain_or_masked(module: nn.Module, name: str, who: str) -> None:
    """Refuse (``ModelError``) a layer whose weight carries a parametrization other than a
    pruning mask: ``who`` (``"prune_: sparse VD"``) needs the plain or masked weight."""
    if not parametrize.is_parametrized(module, "weight"):
        return
    others = [
        type(p).__name__ for p in module.parametrizations.weight if not isinstance(p, WeightMask)
    ]
    if others:
        raise ModelError(
            f"{who}: {name}.weight already has {', '.join(others)}; it needs the plain (or "
            "masked) weight"
        )


def set_mask(module: nn.Module, mask: Tensor) -> None:
    """Give ``module.weight`` the mask ``mask`` (replacing any earlier one) and zero it."""
    existing = find_parametrization(module, WeightMask)
    if existing is not None:
        existing.mask.copy_(mask)
    else:
        parametrize.register_parametrization(module, "weight", WeightMask(mask))
    with torch.no_grad():  # also zero the stored values: optimizers then see clean zeros
        original = module.parametrizations.weight.original
        original.mul_(mask.to(original.dtype))


@register_handler("prune", Magnitude)
def prune_magnitude_(
    model: nn.Module, config: Magnitude, example_inputs: object = None, *, data: object = None
) -> PerLayerReport:
    """Prune ``model`` in place by weight magnitude; masks then hold the zeros during training.

    Pruning is cumulative: weights already at zero are the first to go, so calling this again
    with a higher sparsity continues from the current masks (iterative pruning).

    Args:
        model: the network.
        config: which weights to remove.
        example_inputs: not needed (the verb's common signature).
        data: not needed.

    Returns:
        The sparsity of each pruned layer afterwards (``report["fc1"]``).
    """
    layers = [
        (n, m)
        for n, m in config.select(model)
        if isinstance(getattr(m, "weight", None), Tensor)
        and (config.quality is not None or config.target(n) is not None)
    ]
    if not layers:
        raise ModelError("prune_: no layer of the given types and names to prune")
    weights = {n: current_weight(m) for n, m in layers}
    thresholds: dict[str, float] = {}
    if config.scope == "global":
        assert config.sparsity is not None
        everything = torch.cat([w.abs().flatten() for w in weights.values()])
        t = _threshold_for(everything, config.sparsity)
        thresholds = dict.fromkeys(weights, t)
    elif config.quality is not None:
        thresholds = {n: config.quality * float(w.std()) for n, w in weights.items()}
    else:
        thresholds = {n: _threshold_for(w, config.target(n) or 0.0) for n, w in weights.items()}
    report = {}
    for name, module in layers:
        w = weights[name]
        mask = w.abs() > thresholds[name]
        if config.quality is None and config.scope == "layer":
            mask = _exact_count(w, mask, config.target(name) or 0.0)
        set_mask(module, mask)
        report[name] = 1.0 - float(mask.float().mean())
    kept = sum(int(m.weight.count_nonzero()) for _, m in layers)
    total = sum(m.weight.numel() for _, m in layers)
    return PerLayerReport("magnitude pruning: sparsity", report, sparsity=1 - kept / max(total, 1))


def _exact_count(weight: Tensor, mask: Tensor, sparsity: float) -> Tensor:
    """Break ties at the threshold so exactly round(sparsity * n) weights are removed."""
    k = round(sparsity * weight.numel())
    if int((~mask).sum()) == k:
        return mask
    order = weight.abs().flatten().argsort(stable=True)
    exact = torch.ones(weight.numel(), dtype=torch.bool)
    exact[order[:k]] = False
    return exact.view_as(weight)


def sparsity_of(model: nn.Module, layer_types: tuple[str, ...] = COMPRESSIBLE) -> dict[str, float]:
    """Fraction of exactly-zero weights in each layer of the given types."""
    out = {}
    for name, module in weight_layers(model, layer_types):
        w = current_weight(module)
        out[name] = 1.0 - float(torch.count_nonzero(w)) / max(w.numel(), 1)
    return out
