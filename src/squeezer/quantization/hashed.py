"""HashedNets (Chen, Wilson, Tyree, Weinberger & Chen, ICML 2015, "Compressing Neural Networks
with the Hashing Trick").

Every weight of a layer is a virtual weight drawn from a small vector of real ones:

    weight[p] = sign(p) * buckets[h(p)],    h(p) in [0, K),  sign(p) in {-1, +1},

where p is the weight's position and h and sign are hashes of it with the layer's seed. Only
the K buckets are parameters: gradients of the weights that share a bucket add up in it, so
the layer trains directly. The ``.sqz`` file holds the buckets and the seed; the hashes are
computed again on load (a 64-bit splitmix hash in NumPy, the same on every machine).

Starting from a trained layer, each bucket is set to the least-squares value of its members
(the mean of ``sign * weight``) before training continues.

    sq.quantize_(model, sq.quantization.HashedNets(compression=8))
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from squeezer.config import check
from squeezer.core import LayerSelection, PerLayerReport, register_handler, remove_parametrization_
from squeezer.errors import ModelError

_M64 = (1 << 64) - 1


def splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finalizer on uint64 values (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = (x + np.uint64(0x9E3779B97F4A7C15)) & np.uint64(_M64)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def hash_positions(numel: int, buckets: int, seed: int) -> tuple[Tensor, Tensor]:
    """``(bucket index, sign)`` of every position ``0..numel-1`` under ``seed``."""
    p = np.arange(numel, dtype=np.uint64)
    s = np.uint64(seed & _M64)
    with np.errstate(over="ignore"):
        h = splitmix64(p ^ splitmix64(np.array([s], dtype=np.uint64))[0])
        g = splitmix64(h ^ np.uint64(0xD6E8FEB86659FD93))
    index = torch.from_numpy((h % np.uint64(buckets)).astype(np.int64))
    sign = torch.from_numpy(np.where(g >> np.uint64(63), -1.0, 1.0).astype(np.float32))
    return index, sign


@dataclass(frozen=True)
class HashedNets(LayerSelection):
    """Weights drawn from hash buckets.

    Attributes:
        compression: virtual weights per real one (K = ceil(numel / compression) buckets per
            layer); ``per_layer`` overrides it by layer name.
        per_layer: layer name or pattern -> compression.
        signed: also hash a sign per weight (the paper's xi), which makes the collisions
            unbiased.
        seed: the hash seed (each layer's own seed is derived from it and the layer's name).
        layers, exclude, layer_types: which layers (default: every Linear and Conv).
    """

    compression: float = 8.0
    per_layer: dict[str, float] = field(default_factory=dict)
    signed: bool = True
    seed: int = 0

    def validate(self) -> None:
        super().validate()
        check(self.compression >= 1, "HashedNets: compression must be >= 1")
        for name, value in self.per_layer.items():
            check(value >= 1, f"HashedNets: compression of {name} must be >= 1")
        check(isinstance(self.seed, int) and self.seed >= 0, "HashedNets: seed must be >= 0")

    def compression_for(self, name: str) -> float:
        from squeezer.core import matches

        for pattern, value in self.per_layer.items():
            if matches(name, (pattern,)):
                return float(value)
        return float(self.compression)


def layer_seed(seed: int, name: str) -> int:
    """A layer's hash seed: the config's seed mixed with a stable hash of the layer name."""
    code = int.from_bytes(name.encode()[:8].ljust(8, b"\0"), "little") ^ len(name) << 56
    for i in range(8, len(name), 8):
        code ^= int.from_bytes(name.encode()[i : i + 8].ljust(8, b"\0"), "little") * (i + 1)
    mixed = splitmix64(np.array([(seed ^ code) & _M64], dtype=np.uint64))[0]
    return int(mixed) & ((1 << 62) - 1)


class HashedWeight(nn.Module):
    """Parametrization ``weight = sign * buckets[index]``; the parameter is the bucket
    vector."""

    def __init__(self, shape: tuple[int, ...], buckets: int, seed: int, signed: bool) -> None:
        super().__init__()
        self.shape = tuple(int(s) for s in shape)
        self.buckets, self.seed, self.signed = int(buckets), int(seed), bool(signed)
        numel = int(np.prod(self.shape))
        index, sign = hash_positions(numel, self.buckets, self.seed)
        self.register_buffer("index", index, persistent=False)
        self.register_buffer("sign", sign if signed else torch.ones(numel), persistent=False)

    def forward(self, buckets: Tensor) -> Tensor:
        return hashed_weight(buckets, self.index, self.sign, self.shape)

    def right_inverse(self, weight: Tensor) -> Tensor:
        """The buckets that best reproduce ``weight`` (each the mean of its signed members)."""
        flat = (weight.detach().reshape(-1) * self.sign).to(torch.float32)
        sums = torch.zeros(self.buckets).index_add_(0, self.index, flat)
        counts = torch.bincount(self.index, minlength=self.buckets).clamp(min=1)
        return sums / counts

    def extra_repr(self) -> str:
        return f"buckets={self.buckets}, seed={self.seed}, signed={self.signed}"


def hashed_weight(buckets: Tensor, index: Tensor, sign: Tensor, shape: tuple[int, ...]) -> Tensor:
    """The weight HashedNets describes (the layer and the ``.sqz`` decoder both use this)."""
    return (buckets[index] * sign).reshape(shape)


def hashed_codes(module: nn.Module, tensor: str = "weight") -> tuple[Tensor, int, bool] | None:
    """``(buckets, seed, signed)`` of a hashed tensor, for the ``.sqz`` coder."""
    if not parametrize.is_parametrized(module, tensor):
        return None
    plist = module.parametrizations[tensor]
    if len(plist) != 1 or not isinstance(plist[0], HashedWeight):
        return None
    return plist.original.detach().clone(), plist[0].seed, plist[0].signed


@register_handler("quantize", HashedNets)
def hashed_nets_(
    model: nn.Module, config: HashedNets, example_inputs: object = None, *, data: object = None
) -> PerLayerReport:
    """Make every selected layer's weight a hashed one (in place); the buckets train after.

    Raises:
        ModelError: no selected layer with a weight.
    """
    report = {}
    for name, module in config.select(model):
        w = getattr(module, "weight", None)
        if not isinstance(w, Tensor):
            continue
        with torch.no_grad():
            value = w.detach().clone().float()
        ratio = config.compression_for(name)
        buckets = max(1, int(np.ceil(value.numel() / ratio)))
        if parametrize.is_parametrized(module, "weight"):
            remove_parametrization_(module, "weight")
        seed = layer_seed(config.seed, name)
        parametrize.register_parametrization(
            module,
            "weight",
            HashedWeight(tuple(value.shape), buckets, seed, config.signed),
            unsafe=True,
        )
        with torch.no_grad():
            error = float((module.weight - value).norm() / value.norm().clamp(min=1e-30))
        report[name] = {"buckets": buckets, "compression": ratio, "relative_error": error}
    if not report:
        raise ModelError("quantize_: HashedNets found no layer of the given types")
    return PerLayerReport("HashedNets", report, signed=config.signed)
