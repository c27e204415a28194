"""Trained weight sharing by k-means (Han, Mao & Dally 2016, "Deep Compression", section 3).

Each layer's surviving (non-zero) weights are clustered by 1-D k-means; every weight is then
replaced by its cluster's centroid, so the layer stores a small codebook plus a short index per
weight. The centroids are then fine-tuned: the gradient of a centroid is the sum of the
gradients of the weights that share it, assignments stay fixed, and pruned weights stay zero.

The paper compares three ways to initialize the centroids; linear (evenly spaced between the
smallest and largest weight) works best because it keeps centroids for the rare large weights.

Hessian-weighted k-means (Choi, El-Khamy & Lee 2017, method S5): the loss grows with a
weight's quantization error in proportion to that weight's diagonal Hessian, so the k-means
objective weights each squared error by it (``weighting="hessian"``: Hutchinson's estimate
``E[z * Hz]`` with Rademacher ``z``, by double backpropagation over the given batches), or by
the mean squared minibatch gradient (``weighting="fisher"``: the empirical Fisher diagonal,
what Adam's second moment estimates, the paper's cheaper alternative). The centroids then
become the weighted means of their clusters.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from squeezer.config import check
from squeezer.core import LayerSelection, PerLayerReport, override, register_handler
from squeezer.core.modules import remove_parametrization_
from squeezer.errors import ModelError

INITS = ("linear", "density", "random")
WEIGHTINGS = ("none", "hessian", "fisher")
MAX_BITS = 8


class SharedWeights(nn.Module):
    """Parametrization ``weight = [0, c_1, ..., c_K][indices]`` with a trainable codebook c.

    Index 0 is reserved for an exact zero (pruned weights); 1..K select a centroid. The
    parameter this parametrization owns *is* the codebook, so autograd's gradient for it is
    the sum of the gradients of the weights that share each entry, as the paper prescribes.
    """

    def __init__(self, indices: Tensor, centroids: Tensor) -> None:
        super().__init__()
        self.register_buffer("indices", indices.to(torch.int64))
        self.register_buffer("initial", centroids.detach().clone().to(torch.float32))

    def forward(self, codebook: Tensor) -> Tensor:
        table = torch.cat([codebook.new_zeros(1), codebook])
        return table[self.indices]

    def right_inverse(self, weight: Tensor) -> Tensor:
        """The codebook that best reproduces ``weight`` under the fixed assignment."""
        k = self.initial.numel()
        flat = self.indices.flatten()
        sums = weight.new_zeros(k + 1).index_add_(0, flat, weight.flatten())
        counts = torch.bincount(flat, minlength=k + 1).to(weight.dtype)
        means = torch.where(counts > 0, sums / counts.clamp(min=1), self.initial_with_zero())
        return means[1:].to(weight.dtype)

    def initial_with_zero(self) -> Tensor:
        return torch.cat([self.initial.new_zeros(1), self.initial])


@dataclass(frozen=True)
class KMeansSharing(LayerSelection):
    """Per-layer k-means weight sharing.

    Attributes:
        bits: index width for every layer (overrides ``conv_bits``/``fc_bits``).
        conv_bits: index width of convolutions (the paper: 8).
        fc_bits: index width of fully connected layers (the paper: 5).
        per_layer: layer name or pattern -> bits, overriding the above.
        bias_bits: also share each layer's bias with this many bits (None: biases stay
            float32, as in the paper).
        init: centroid initialization, ``"linear"``, ``"density"`` or ``"random"``.
        seed: for ``"random"`` initialization.
        weighting: ``"none"`` (plain k-means, the paper), ``"hessian"`` or ``"fisher"``
            (Hessian-weighted k-means, see the module documentation; needs ``data``).
        max_batches: batches of ``data`` used to estimate the weighting.
        layers, exclude, layer_types: which layers (see :class:`squeezer.core.LayerSelection`;
            by default every Linear and Conv).

    With b bits a layer gets 2^b - 1 centroids; the remaining index is the exact zero that
    pruned weights and the coder's filler entries use.
    """

    bits: int | None = None
    conv_bits: int = 8
    fc_bits: int = 5
    per_layer: dict[str, int] = field(default_factory=dict)
    bias_bits: int | None = None
    init: str = "linear"
    seed: int = 0
    weighting: str = "none"
    max_batches: int = 8

    def validate(self) -> None:
        super().validate()
        for where, b in [
            ("bits", self.bits),
            ("conv_bits", self.conv_bits),
            ("fc_bits", self.fc_bits),
            ("bias_bits", self.bias_bits),
            *self.per_layer.items(),
        ]:
            check(b is None or 1 <= b <= MAX_BITS, f"KMeansSharing: {where} must be in 1..8")
        check(self.init in INITS, f"KMeansSharing: init must be one of {', '.join(INITS)}")
        check(
            self.weighting in WEIGHTINGS,
            f"KMeansSharing: weighting must be one of {', '.join(WEIGHTINGS)}",
        )
        check(self.max_batches >= 1, "KMeansSharing: max_batches must be >= 1")

    def bits_for(self, name: str, module: nn.Module) -> int:
        if self.bits is not None:
            default = self.bits
        else:
            default = self.fc_bits if isinstance(module, nn.Linear) else self.conv_bits
        return override(self.per_layer, name, default)


def initial_centroids(values: np.ndarray, k: int, init: str, seed: int = 0) -> np.ndarray:
    """Starting centroids: evenly spaced in value (linear), in CDF (density), or sampled."""
    lo, hi = float(values.min()), float(values.max())
    if init == "linear":
        return np.linspace(lo, hi, k)
    if init == "density":
        return np.quantile(values, np.linspace(0, 1, k + 2)[1:-1])
    rng = np.random.default_rng(seed)
    return rng.choice(values, size=k, replace=values.size < k)


def kmeans_1d(
    values: np.ndarray,
    k: int,
    init: str,
    seed: int = 0,
    sample_weight: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Cluster ``values`` into at most ``k`` groups, each squared error weighted by
    ``sample_weight`` (default: all 1); returns ``(centroids, labels)``."""
    from sklearn.cluster import KMeans

    distinct = np.unique(values)
    if distinct.size <= k:  # nothing to cluster: every value is its own centroid
        labels = np.searchsorted(distinct, values)
        return distinct.astype(np.float64), labels
    start = np.unique(initial_centroids(values, k, init, seed))
    km = KMeans(n_clusters=start.size, init=start.reshape(-1, 1), n_init=1, random_state=seed)
    labels = km.fit_predict(values.reshape(-1, 1).astype(np.float64), sample_weight=sample_weight)
    return km.cluster_centers_.ravel(), labels


def _labelled_batches(data: object, limit: int) -> list[tuple[Tensor, Tensor]]:
    from squeezer.data import ImageDataset, loader

    if isinstance(data, ImageDataset):
        data = loader(data.without_augment(), 64, shuffle=True, seed=0)
    elif isinstance(data, torch.utils.data.Dataset):
        data = torch.utils.data.DataLoader(data, batch_size=64)
    out = []
    for batch in data:  # type: ignore[attr-defined]
        if isinstance(batch, tuple | list) and len(batch) >= 2 and isinstance(batch[1], Tensor):
            out.append((batch[0], batch[1]))
        if len(out) >= limit:
            break
    return out


def loss_curvature(
    model: nn.Module, data: object, kind: str, max_batches: int = 8, seed: int = 0
) -> dict[str, Tensor]:
    """Per parameter name, a non-negative estimate of the loss's diagonal curvature over
    ``max_batches`` batches of ``(inputs, labels)``: ``"hessian"`` (Hutchinson's
    ``E[z * Hz]``, one Rademacher ``z`` a batch, clamped at zero) or ``"fisher"`` (the mean
    squared minibatch gradient)."""
    batches = _labelled_batches(data, max_batches)
    if not batches:
        raise ModelError("Hessian-weighted k-means needs (inputs, labels) batches as data=")
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    sums = {n: torch.zeros_like(p) for n, p in params.items()}
    gen = torch.Generator().manual_seed(seed)
    was = model.training
    model.eval()
    try:
        for inputs, labels in batches:
            loss = nn.functional.cross_entropy(model(inputs), labels)
            if kind == "fisher":
                grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
                for (n, _), g in zip(params.items(), grads, strict=True):
                    if g is not None:
                        sums[n] += g.detach() ** 2
                continue
            grads = torch.autograd.grad(
                loss, list(params.values()), create_graph=True, allow_unused=True
            )
            pairs = [(n, g) for (n, _), g in zip(params.items(), grads, strict=True)
                     if g is not None]  # fmt: skip
            zs = [torch.randint(0, 2, g.shape, generator=gen).to(g.dtype) * 2 - 1
                  for _, g in pairs]  # fmt: skip
            hz = torch.autograd.grad(
                [g for _, g in pairs], [params[n] for n, _ in pairs], grad_outputs=zs,
                allow_unused=True,
            )  # fmt: skip
            for (n, _), z, h in zip(pairs, zs, hz, strict=True):
                if h is not None:
                    sums[n] += (z * h).detach()
    finally:
        model.train(was)
    # a parametrized weight (a pruning mask) is "<layer>.parametrizations.weight.original"
    return {
        n.replace(".parametrizations.weight.original", ".weight"): (s / len(batches)).clamp(min=0)
        for n, s in sums.items()
    }


def share_weights(
    module: nn.Module,
    bits: int,
    init: str = "linear",
    seed: int = 0,
    tensor: str = "weight",
    importance: Tensor | None = None,
) -> int:
    """Replace ``module.<tensor>`` by a shared-value parametrization; returns the cluster
    count. ``importance`` (shaped like the tensor) weights each value's squared error in the
    k-means (Hessian-weighted k-means)."""
    with torch.no_grad():
        w = getattr(module, tensor).detach().clone()
    nonzero = w != 0
    values = w[nonzero].double().numpy()
    indices = torch.zeros(w.shape, dtype=torch.int64)
    if values.size == 0:
        centroids = np.zeros(1)
    else:
        weight = None
        if importance is not None:
            imp = importance.detach()[nonzero].double()
            # a floor keeps weights with no measured curvature in the objective
            weight = (imp + 1e-3 * float(imp.mean()) + 1e-30).numpy()
        centroids, labels = kmeans_1d(values, 2**bits - 1, init, seed, weight)
        indices[nonzero] = torch.from_numpy(labels.astype(np.int64)) + 1
    if parametrize.is_parametrized(module, tensor):
        remove_parametrization_(module, tensor)  # the mask's zeros stay in the values
    with torch.no_grad():  # the k-means centroids are the weights from now on
        table = torch.cat([torch.zeros(1), torch.from_numpy(centroids).float()])
        getattr(module, tensor).copy_(table[indices])
    parametrize.register_parametrization(
        module, tensor, SharedWeights(indices, torch.from_numpy(centroids).float())
    )
    return int(centroids.size)


@register_handler("quantize", KMeansSharing)
def share_weights_(
    model: nn.Module, config: KMeansSharing, example_inputs: object = None, *, data: object = None
) -> PerLayerReport:
    """Share weights in every selected layer of ``model`` (in place).

    Returns:
        Per layer: ``bits`` and ``clusters`` (fewer than 2^bits - 1 when the layer has fewer
        distinct values), as ``report["fc1"]``.
    """
    curvature: dict[str, Tensor] = {}
    if config.weighting != "none":
        if data is None:
            raise ModelError(
                f"quantize_: KMeansSharing(weighting={config.weighting!r}) needs data= "
                "batches of (inputs, labels) to estimate the curvature"
            )
        curvature = loss_curvature(model, data, config.weighting, config.max_batches, config.seed)
    report = {}
    for name, module in config.select(model):
        if not isinstance(getattr(module, "weight", None), Tensor):
            continue
        bits = config.bits_for(name, module)
        importance = curvature.get(f"{name}.weight" if name else "weight")
        clusters = share_weights(module, bits, config.init, config.seed, importance=importance)
        report[name] = {"bits": bits, "clusters": clusters}
        if config.bias_bits is not None and isinstance(getattr(module, "bias", None), Tensor):
            share_weights(module, config.bias_bits, config.init, config.seed, tensor="bias")
            report[name]["bias_bits"] = config.bias_bits
    if not report:
        raise ModelError("quantize_: no layer of the given types and names")
    return PerLayerReport("k-means weight sharing", report)


def codebook_of(module: nn.Module, tensor: str = "weight") -> Tensor | None:
    """The trainable codebook of a shared-value tensor (``weight`` or ``bias``), or None."""
    if not parametrize.is_parametrized(module, tensor):
        return None
    plist = module.parametrizations[tensor]
    if not any(isinstance(p, SharedWeights) for p in plist):
        return None
    return plist.original
