"""What a policy search chooses, and what it must stay within.

A :class:`ChannelSpace` is the per-layer decision of channel pruning: one removal ratio per
coupled channel group of the model (named by one layer producing it), turned into a smaller
model by the channel-pruning handler with the graph traced once. Its :meth:`~ChannelSpace.cost`
predicts FLOPs and parameters of any policy without building the model: each layer's count is
its original count times ``keep_g ** e`` for every group ``g`` it touches, the exponents found
once by pruning each group alone (so a conv between two pruned groups scales by both keep
fractions, a depthwise conv by its one group). Predictions are exact up to the channel counts'
rounding, and the model a search returns is always counted for real.

A :class:`Budget` says which cost and how far to cut it: ``Budget("flops", 2.0)`` is at most
half the original FLOPs; ``"params"``, ``"size"`` (bytes of the weights as stored in memory) and
``"latency"`` (measured, on a named backend and batch size) work alike.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from squeezer.analysis import count_flops, count_params, size_bytes
from squeezer.errors import ConfigError, ModelError
from squeezer.pruning import ChannelPruning
from squeezer.pruning.channel import channel_plan
from squeezer.surgery import ChannelGraph
from squeezer.surgery.channels import apply_plan, coupled_groups
from squeezer.train import recalibrate_bn_

METRICS = ("flops", "params", "size", "latency")


@dataclass(frozen=True)
class Budget:
    """At most ``1 / reduction`` of the original model's ``metric``.

    Attributes:
        metric: ``"flops"``, ``"params"``, ``"size"`` (bytes of the weights) or ``"latency"``
            (median wall time of one forward pass, measured).
        reduction: how many times smaller the result must be, > 1 (2.0: half the FLOPs).
        backend: for latency: ``eager``, ``compile`` or ``onnxruntime``.
        batch_size: for latency: the batch timed.
        threads: for latency: threads (None: PyTorch's current setting).
    """

    metric: str = "flops"
    reduction: float = 2.0
    backend: str = "eager"
    batch_size: int = 1
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ConfigError(f"Budget: metric must be one of {', '.join(METRICS)}, "
                              f"got {self.metric!r}")  # fmt: skip
        if not self.reduction > 1:
            raise ConfigError(f"Budget: reduction must be > 1, got {self.reduction}")

    @property
    def measured(self) -> bool:
        return self.metric == "latency"

    def describe(self) -> str:
        what = {"flops": "FLOPs", "params": "parameters", "size": "bytes",
                "latency": f"latency ({self.backend}, batch {self.batch_size})"}  # fmt: skip
        return f"{self.reduction:g}x fewer {what[self.metric]}"


def latency_ms(model: nn.Module, x: Tensor, budget: Budget, min_run_time: float = 0.3) -> float:
    """Median milliseconds of one forward pass of ``model`` at the budget's batch size,
    backend and threads."""
    from squeezer.analysis import time_models
    from squeezer.deploy import prepare

    threads = budget.threads or torch.get_num_threads()
    batch = x.expand(budget.batch_size, *x.shape[1:]).contiguous()
    ready = prepare(model.eval(), budget.backend, batch, threads).module
    return time_models([ready], (x,), budget.batch_size, threads,
                       min_run_time=min_run_time)[0].median_ms  # fmt: skip


def measure_cost(model: nn.Module, x: Tensor, budget: Budget) -> float:
    """The budget's metric of ``model``, counted (or timed, for latency)."""
    if budget.metric == "flops":
        return float(count_flops(model, (x,))[0])
    if budget.metric == "params":
        return float(count_params(model))
    if budget.metric == "size":
        return float(size_bytes(model))
    return latency_ms(model, x, budget)


def _own_counts(model: nn.Module, x: Tensor) -> tuple[dict[str, int], dict[str, int]]:
    flops = count_flops(model, (x,))[1]
    params = {n: sum(p.numel() for p in m.parameters(recurse=False))
              for n, m in model.named_modules()}  # fmt: skip
    leaf_flops = {n: f for n, f in flops.items()
                  if n and not any(k.startswith(n + ".") for k in flops)}  # fmt: skip
    return leaf_flops, {n: c for n, c in params.items() if c}


class ChannelSpace:
    """One channel-removal ratio per coupled group of ``model``.

    Args:
        model: the trained network (never changed).
        example_inputs: one example (a batch of one) for tracing and counting.
        criterion: the channel criterion that picks which channels go (``l1`` by default).
        max_ratio: the largest ratio a group may lose.
        layers, exclude: which producing layers may lose channels (patterns).
        round_to: keep a multiple of this many channels per group.
        data: batches for criteria that read data.

    Attributes:
        names: one producing layer per group (the policy's keys).
        channels: the group sizes.
    """

    def __init__(
        self,
        model: nn.Module,
        example_inputs: Tensor,
        *,
        criterion: str = "l1",
        max_ratio: float = 0.8,
        layers: Sequence[str] = (),
        exclude: Sequence[str] = (),
        round_to: int = 1,
        data: Iterable[Any] | None = None,
    ) -> None:
        if not 0 < max_ratio < 1:
            raise ConfigError(f"ChannelSpace: max_ratio must be in (0, 1), got {max_ratio}")
        self.model = model.eval()
        self.x = example_inputs
        self.max_ratio = max_ratio
        self.data = list(data) if data is not None else None
        self.config = ChannelPruning(ratio=0.0, criterion=criterion, layers=tuple(layers),
                                     exclude=tuple(exclude), round_to=round_to)  # fmt: skip
        self.graph = ChannelGraph(model, (example_inputs,), tracer=self.config.tracer)
        modules = dict(model.named_modules())
        criterion_obj = self.config.make_criterion()
        groups = coupled_groups(self.graph, lambda n: self.config.selects(n, modules[n]))
        groups = {k: v for k, v in groups.items() if criterion_obj.eligible(model, v)}
        order = {n: i for i, n in enumerate(modules)}
        keys = sorted(groups, key=lambda k: min(order[p] for p in k))
        self.names = [min(k, key=lambda p: order[p]) for k in keys]
        self.producers = {
            n: sorted(k, key=lambda p: order[p]) for n, k in zip(self.names, keys, strict=True)
        }
        self.channels = {n: len(groups[k]) for n, k in zip(self.names, keys, strict=True)}
        self.classes = {n: groups[k] for n, k in zip(self.names, keys, strict=True)}
        self.round_to = round_to
        if not self.names:
            raise ModelError("ChannelSpace: the model has no channel group that can be pruned "
                             "(check layers / exclude)")  # fmt: skip
        self._fit_cost_model()

    # ------------------------------------------------------------------ the search's view
    kind = "channel removal ratio"

    def setting(self, name: str, strength: float) -> float:
        """The ratio a compression strength in [0, 1] stands for (1: ``max_ratio``)."""
        return self.max_ratio * min(1.0, max(0.0, float(strength)))

    def strength(self, name: str, value: float) -> float:
        """The inverse of :meth:`setting`."""
        return float(value) / self.max_ratio

    def limit_text(self) -> str:
        """What the largest strength means, for messages."""
        return f"at most {100 * self.max_ratio:.0f}% of each group's channels removed"

    def describe(self, value: float) -> str:
        return f"remove {100 * value:5.1f}%"

    def measure(self, model: nn.Module, budget: Budget) -> float:
        """The budget's metric of a built model, counted (or timed)."""
        return measure_cost(model, self.x, budget)

    # ------------------------------------------------------------------ building
    def build(self, ratios: Mapping[str, float]) -> nn.Module:
        """A pruned copy of the model with ``ratios`` (name -> ratio; missing names: 0)."""
        unknown = set(ratios) - set(self.names)
        if unknown:
            raise ConfigError(f"ChannelSpace: no group named {', '.join(sorted(unknown))}")
        per_layer = {n: float(r) for n, r in ratios.items() if r > 0}
        if not per_layer:
            return copy.deepcopy(self.model)
        config = self.config.replace(per_layer=per_layer)
        plan, criterion = channel_plan(self.model, config, (self.x,), self.data, graph=self.graph)
        pruned = apply_plan(self.model, plan)
        criterion.compensate(self.model, pruned, plan)
        return pruned.eval()

    # ------------------------------------------------------------------ cost model
    def kept(self, name: str, ratio: float) -> float:
        """The fraction of group ``name``'s channels kept at ``ratio`` (as the planner rounds)."""
        n = self.channels[name]
        keep = max(1, math.floor((1 - ratio) * n + 1e-9))
        if self.round_to > 1:
            keep = max(self.round_to, (keep // self.round_to) * self.round_to)
        return min(keep, n) / n

    def _fit_cost_model(self) -> None:
        base_flops, base_params = _own_counts(self.model, self.x)
        self.base = {"flops": base_flops, "params": base_params}
        self.exponents: dict[str, dict[str, dict[str, float]]] = {"flops": {}, "params": {}}
        probe = 0.5
        for name in self.names:
            k = self.kept(name, probe)
            if k >= 1:
                continue
            flops, params = _own_counts(self.build({name: probe}), self.x)
            for metric, after in (("flops", flops), ("params", params)):
                for layer, before in self.base[metric].items():
                    now = after.get(layer, before)
                    if before and now != before:
                        e = math.log(max(now, 1) / before) / math.log(k)
                        self.exponents[metric].setdefault(layer, {})[name] = e
        self.total = {"flops": float(sum(base_flops.values())),
                      "params": float(sum(base_params.values()))}  # fmt: skip
        self.bytes_per_param = size_bytes(self.model) / max(count_params(self.model), 1)

    def cost(self, ratios: Mapping[str, float], metric: str = "flops") -> float:
        """Predicted FLOPs, parameters or bytes of the model :meth:`build` would return."""
        if metric == "latency":
            raise ConfigError("ChannelSpace.cost: latency is measured, not predicted")
        which = "params" if metric == "size" else metric
        kept = {n: self.kept(n, float(r)) for n, r in ratios.items() if r > 0}
        total = 0.0
        for layer, count in self.base[which].items():
            factor = 1.0
            for group, e in self.exponents[which].get(layer, {}).items():
                if group in kept:
                    factor *= kept[group] ** e
            total += count * factor
        return total * (self.bytes_per_param if metric == "size" else 1.0)

    def features(self) -> list[dict[str, float]]:
        """Per group, what AMC's agent sees of the layer producing it: output and input
        channels, kernel size, stride, spatial size, and its FLOPs."""
        modules = dict(self.model.named_modules())
        shapes: dict[str, tuple[int, ...]] = {}

        def hook(name: str):
            def record(_m: nn.Module, _i: Any, out: Tensor) -> None:
                shapes[name] = tuple(out.shape)

            return record

        handles = [modules[n].register_forward_hook(hook(n)) for n in self.names]
        try:
            with torch.no_grad():
                self.model(self.x)
        finally:
            for h in handles:
                h.remove()
        rows = []
        for n in self.names:
            m = modules[n]
            shape = shapes.get(n, ())
            rows.append({
                "out": float(self.channels[n]),
                "in": float(getattr(m, "in_channels", getattr(m, "in_features", 0))),
                "kernel": float(getattr(m, "kernel_size", (1,))[0]),
                "stride": float(getattr(m, "stride", (1,))[0]),
                "size": float(shape[-1]) if len(shape) == 4 else 1.0,
                "flops": float(sum(self.base["flops"].get(p, 0) for p in self.producers[n])),
            })  # fmt: skip
        return rows


def scale_to_budget(
    space: Any,
    preference: Mapping[str, float],
    target: float,
    metric: str = "flops",
    iterations: int = 40,
) -> dict[str, Any] | None:
    """The settings at strengths ``min(1, s * preference)`` (see ``space.setting``) with
    the smallest ``s`` whose predicted cost is at most ``target``; None when even the
    strongest settings miss it."""
    pref = {n: min(1.0, max(0.0, float(preference.get(n, 0.0)))) for n in space.names}

    def settings(s: float) -> dict[str, Any]:
        return {n: space.setting(n, min(1.0, s * p)) for n, p in pref.items() if p > 0}

    top = 1.0 / min((p for p in pref.values() if p > 0), default=1.0)
    if space.cost(settings(top), metric) > target:
        return None
    lo, hi = 0.0, top
    for _ in range(iterations):
        mid = (lo + hi) / 2
        if space.cost(settings(mid), metric) <= target:
            hi = mid
        else:
            lo = mid
    return settings(hi)


@dataclass
class Evaluator:
    """How a candidate is scored: BatchNorm statistics re-estimated on training batches,
    optionally a few steps of fine-tuning, then top-1 on the validation data.

    Attributes:
        val: validation data (an ImageDataset or batches), held out from the test set.
        train: training data for BatchNorm re-estimation and fine-tuning (None: neither).
        bn_batches: batches of 128 for re-estimating BatchNorm (0: keep the statistics).
        finetune_steps: SGD steps on ``train`` before evaluating (0: none).
        lr: the fine-tuning learning rate.
    """

    val: Any
    train: Any = None
    bn_batches: int = 20
    finetune_steps: int = 0
    lr: float = 0.01

    def __call__(self, model: nn.Module) -> float:
        from squeezer.train import evaluate, fit

        has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
        if self.train is not None and self.finetune_steps:
            batches = _first_batches(self.train, self.finetune_steps)
            fit(model, batches, epochs=1, lr=self.lr, schedule="constant", progress=False)
        if self.train is not None and self.bn_batches and has_bn:
            recalibrate_bn_(model, self.train, max_batches=self.bn_batches)
        return float(evaluate(model, self.val, topk=(1,), progress=False)["top1"])


def _first_batches(data: Any, n: int, batch_size: int = 128) -> list[Any]:
    from squeezer.data import ImageDataset, loader

    if isinstance(data, ImageDataset):
        source = loader(data, batch_size, shuffle=True, seed=0)
    else:
        source = data
    out = []
    while len(out) < n:
        before = len(out)
        for batch in source:
            out.append(batch)
            if len(out) == n:
                break
        if len(out) == before:
            break
    return out


class BitSpace:
    """One bit-width per layer (weights and layer inputs alike, as HAQ's search does), made
    by the k-bit quantization handler (``QAT`` without training: calibrated post-training
    quantization, which fine-tuning then trains from).

    Its cost is the ``.sqz`` file (``"size"``): each layer's weights as ``bits``-wide codes,
    the rest as float32, predicted from the parameter counts plus the file's fixed overhead
    (measured once on two probes), and counted on the real file for every built model.

    Args:
        model: the trained network (never changed).
        example_inputs: one example for tracing and counting.
        data: calibration batches (activation ranges).
        min_bits, max_bits: the range each layer may take.
        layers, exclude: which Conv/Linear layers are searched (the others stay float32).
        per_channel: per-output-channel weight scales (as ``QAT``).
    """

    kind = "bits"

    def __init__(
        self,
        model: nn.Module,
        example_inputs: Tensor,
        data: Iterable[Any],
        *,
        min_bits: int = 2,
        max_bits: int = 8,
        layers: Sequence[str] = (),
        exclude: Sequence[str] = (),
        per_channel: bool = True,
    ) -> None:
        from squeezer.quantization import QAT

        if not 2 <= min_bits <= max_bits <= 8:
            raise ConfigError(f"BitSpace: need 2 <= min_bits <= max_bits <= 8, got "
                              f"{min_bits}, {max_bits}")  # fmt: skip
        self.model = model.eval()
        self.x = example_inputs
        self.data = list(data)
        self.min_bits, self.max_bits = min_bits, max_bits
        self.config = QAT(bits=max_bits, first_last_bits=None, per_channel=per_channel,
                          layers=tuple(layers), exclude=tuple(exclude))  # fmt: skip
        self.names = [n for n, _ in self.config.select(model)]
        if not self.names:
            raise ModelError("BitSpace: no Conv or Linear layer to quantize (check layers)")
        modules = dict(model.named_modules())
        self.weights = {n: modules[n].weight.numel() for n in self.names}
        searched = sum(self.weights.values())
        self.float_bytes = 4 * (count_params(model) - searched)
        flops = count_flops(model, (example_inputs,))[1]
        self.flops = {n: flops.get(n, 0) for n in self.names}
        # the file's own overhead (header, scales, zero points), from two probes
        overhead = []
        for b in (min_bits, max_bits):
            bits = dict.fromkeys(self.names, b)
            overhead.append(self.measure(self.build(bits)) - self._payload(bits))
        self.overhead = max(overhead) + 64

    def setting(self, name: str, strength: float) -> int:
        """Bits at a compression strength in [0, 1] (0: ``max_bits``, 1: ``min_bits``)."""
        s = min(1.0, max(0.0, float(strength)))
        return round(self.max_bits - s * (self.max_bits - self.min_bits))

    def strength(self, name: str, value: int) -> float:
        span = self.max_bits - self.min_bits
        return (self.max_bits - int(value)) / span if span else 0.0

    def limit_text(self) -> str:
        return f"every layer at {self.min_bits} bits"

    def describe(self, value: int) -> str:
        return f"{int(value)} bits"

    def build(self, bits: Mapping[str, int]) -> nn.Module:
        """A quantized copy with ``bits`` per layer (missing names: ``max_bits``)."""
        from squeezer.quantization import quantize_

        unknown = set(bits) - set(self.names)
        if unknown:
            raise ConfigError(f"BitSpace: no layer named {', '.join(sorted(unknown))}")
        per_layer = {n: int(bits.get(n, self.max_bits)) for n in self.names}
        model = copy.deepcopy(self.model)
        quantize_(model, self.config.replace(per_layer=per_layer), (self.x,), data=self.data)
        return model.eval()

    def _payload(self, bits: Mapping[str, int]) -> float:
        codes = sum(self.weights[n] * int(bits.get(n, self.max_bits)) for n in self.names) / 8
        return codes + self.float_bytes

    def cost(self, bits: Mapping[str, int], metric: str = "size") -> float:
        """Predicted ``.sqz`` bytes (``"size"``) of :meth:`build`'s model."""
        if metric != "size":
            raise ConfigError(f"BitSpace: the budget must be size, got {metric}")
        return self._payload(bits) + getattr(self, "overhead", 0.0)

    def measure(self, model: nn.Module, budget: Budget | None = None) -> float:
        """Bytes of ``model``'s ``.sqz`` file (k-bit codes packed, no entropy coding)."""
        from squeezer.coding import encode_model

        return float(len(encode_model(model, "fixed")))

    def features(self) -> list[dict[str, float]]:
        modules = dict(self.model.named_modules())
        rows = []
        for n in self.names:
            m = modules[n]
            rows.append({
                "out": float(getattr(m, "out_channels", getattr(m, "out_features", 0))),
                "in": float(getattr(m, "in_channels", getattr(m, "in_features", 0))),
                "kernel": float(getattr(m, "kernel_size", (1,))[0]),
                "stride": float(getattr(m, "stride", (1,))[0]),
                "size": float(self.weights[n]),
                "flops": float(self.flops[n]),
            })  # fmt: skip
        return rows


Space = ChannelSpace | BitSpace  # what the searches take
