"""Wall-clock latency with ``torch.utils.benchmark``: medians and spreads, never single runs.

When a baseline is given, the two models are timed in alternating blocks within one run, so
a change in machine load affects both sides alike and their ratio stays honest.
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils import benchmark

from squeezer.core.inputs import Inputs, batch_of


@dataclass
class Latency:
    """Latency of one forward pass at a batch size and thread count."""

    batch_size: int
    threads: int
    median_ms: float
    iqr_ms: float
    runs: int

    def to_dict(self) -> dict[str, float | int]:
        return {
            "batch_size": self.batch_size,
            "threads": self.threads,
            "median_ms": self.median_ms,
            "iqr_ms": self.iqr_ms,
            "runs": self.runs,
        }


def _timer(model: nn.Module, x: tuple[torch.Tensor, ...], threads: int) -> benchmark.Timer:
    return benchmark.Timer(stmt="model(*x)", globals={"model": model, "x": x}, num_threads=threads)


def _iqr(values: Sequence[float]) -> float:
    if len(values) < 4:
        return max(values) - min(values) if values else 0.0
    q = statistics.quantiles(values, n=4)
    return q[2] - q[0]


@torch.no_grad()
def time_models(
    models: Sequence[nn.Module],
    inputs: Inputs,
    batch_size: int,
    threads: int,
    *,
    min_run_time: float = 0.5,
    min_rounds: int = 7,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> list[Latency]:
    """Time several models on the same inputs, alternating blocks, in eval mode.

    Args:
        models: one or more models (e.g. baseline and candidate).
        inputs: example inputs; the first example is repeated to ``batch_size``.
        batch_size: examples per forward pass.
        threads: intra-op threads during timing.
        min_run_time: seconds of timing per model, at least.
        min_rounds: blocks per model, at least.
        memory_format: layout of 4-D inputs (``torch.channels_last`` for models converted
            with :func:`squeezer.analysis.inference_copy`).

    Returns:
        One :class:`Latency` per model, in order.
    """
    x = tuple(
        t.contiguous(memory_format=memory_format) if t.dim() == 4 else t
        for t in batch_of(inputs, batch_size)
    )
    modes = [m.training for m in models]
    for m in models:
        m.eval()
    try:
        timers = [_timer(m, x, threads) for m in models]
        # Size each model's block to ~20 ms (at least one call) after a warm-up.
        numbers = []
        for t in timers:
            first = t.timeit(1).median  # warm-up; for a slow model it is also the estimate
            once = first if first > 0.05 else max(t.timeit(3).median, 1e-7)
            numbers.append(max(1, int(0.02 / once)))
        per_call: dict[int, list[float]] = defaultdict(list)
        start = time.perf_counter()
        rounds = 0
        while rounds < min_rounds or time.perf_counter() - start < min_run_time * len(models):
            for i, t in enumerate(timers):
                per_call[i].append(t.timeit(numbers[i]).median)
            rounds += 1
            if rounds >= 1000:
                break
    finally:
        for m, mode in zip(models, modes, strict=True):
            m.train(mode)
    return [
        Latency(
            batch_size,
            threads,
            statistics.median(per_call[i]) * 1e3,
            _iqr(per_call[i]) * 1e3,
            len(per_call[i]),
        )
        for i in range(len(models))
    ]


@torch.no_grad()
def layer_latency(
    model: nn.Module, inputs: Inputs, batch_size: int, threads: int, repeats: int = 20
) -> dict[str, float]:
    """Median milliseconds spent in each leaf module, timed with forward hooks.

    Hooks add a little overhead of their own; the whole-model figure from
    :func:`time_models` is the one to quote, this one shows where time goes.
    """
    x = batch_of(inputs, batch_size)
    samples: dict[str, list[float]] = defaultdict(list)
    starts: dict[str, float] = {}
    handles = []
    for name, module in model.named_modules():
        if next(module.children(), None) is not None:
            continue

        def pre(_m: nn.Module, _a: object, name: str = name) -> None:
            starts[name] = time.perf_counter()

        def post(_m: nn.Module, _a: object, _o: object, name: str = name) -> None:
            samples[name].append(time.perf_counter() - starts[name])

        handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
    old_threads = torch.get_num_threads()
    was_training = model.training
    model.eval()
    try:
        torch.set_num_threads(threads)
        model(*x)
        samples.clear()
        for _ in range(repeats):
            model(*x)
    finally:
        torch.set_num_threads(old_threads)
        model.train(was_training)
        for h in handles:
            h.remove()
    return {name: statistics.median(v) * 1e3 for name, v in samples.items()}
