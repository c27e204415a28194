"""FLOPs and latency over a dataset, for networks whose cost depends on the input.

A dynamic network (early exits, BlockDrop) does different work per example, so one example's
FLOPs and one batch's latency say little. :func:`measure_data` runs the model over real
batches: each example's FLOPs (their mean is the expected cost; min and max show the spread),
top-1 accuracy when the batches carry labels, and the measured time of whole passes over the
batches, alternating with the baseline's when one is given (medians).

A model reports its per-example FLOPs through one method, which the dynamic networks of
:mod:`squeezer.dynamic` have::

    def forward_flops(self, x) -> tuple[Tensor, Tensor]:   # (outputs, FLOPs per example)

Any other model costs its single-example FLOPs on every example.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from squeezer.analysis.counting import count_flops
from squeezer.errors import ConfigError


@dataclass
class DataCost:
    """One model over the data."""

    model: str
    expected_flops: float  # mean FLOPs per example
    min_flops: float
    max_flops: float
    seconds: float  # median seconds of one pass over all the batches
    top1: float | None = None


@dataclass
class DataMeasurement:
    """What :func:`measure_data` found; ``format()`` for people, ``to_dict()`` for JSON."""

    examples: int
    batch_size: int
    threads: int
    rounds: int
    model: DataCost
    baseline: DataCost | None = None

    @property
    def flops_reduction(self) -> float | None:
        if self.baseline is None:
            return None
        return self.baseline.expected_flops / self.model.expected_flops

    @property
    def speedup(self) -> float | None:
        if self.baseline is None:
            return None
        return self.baseline.seconds / self.model.seconds

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "examples": self.examples,
            "batch_size": self.batch_size,
            "threads": self.threads,
            "rounds": self.rounds,
            "model": {**asdict(self.model), "ms_per_example": self._ms(self.model)},
        }
        if self.baseline is not None:
            out["baseline"] = {**asdict(self.baseline), "ms_per_example": self._ms(self.baseline)}
            out["flops_reduction"] = self.flops_reduction
            out["speedup"] = self.speedup
        return out

    def _ms(self, cost: DataCost) -> float:
        return 1000.0 * cost.seconds / self.examples

    def format(self) -> str:
        lines = [
            f"over {self.examples:,} examples (batches of {self.batch_size}, "
            f"{self.threads} thread(s), median of {self.rounds} passes):"
        ]
        for label, cost in (("baseline", self.baseline), ("model", self.model)):
            if cost is None:
                continue
            top1 = "" if cost.top1 is None else f", top-1 {cost.top1:.4f}"
            lines.append(
                f"  {label:<8} {cost.model}: expected FLOPs {cost.expected_flops:,.0f} per "
                f"example (min {cost.min_flops:,.0f}, max {cost.max_flops:,.0f}), "
                f"{self._ms(cost):.3f} ms per example{top1}"
            )
        if self.baseline is not None:
            lines.append(
                f"  expected FLOPs {self.flops_reduction:.2f}x fewer, measured "
                f"{self.speedup:.2f}x faster"
            )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()


def _batches(data: Any, examples: int | None, batch_size: int) -> list[tuple[Tensor, Any]]:
    from squeezer.data import ImageDataset, loader

    source: Iterable[Any] = loader(data, batch_size) if isinstance(data, ImageDataset) else data
    out: list[tuple[Tensor, Any]] = []
    seen = 0
    for batch in source:
        x, y = (batch[0], batch[1] if len(batch) > 1 else None) if isinstance(
            batch, (tuple, list)) else (batch, None)  # fmt: skip
        if not isinstance(x, Tensor):
            raise ConfigError("measure over data: batches must be tensors or (inputs, labels)")
        if examples is not None:
            x = x[: examples - seen]
            y = None if y is None else y[: examples - seen]
        out.append((x, y))
        seen += len(x)
        if examples is not None and seen >= examples:
            break
    if seen == 0:
        raise ConfigError("measure over data: the data gave no examples")
    return out


@torch.no_grad()
def _cost(model: nn.Module, batches: list[tuple[Tensor, Any]]) -> tuple[Tensor, float | None]:
    """Per-example FLOPs and top-1 (None without labels), in one untimed pass."""
    flops, right, labelled = [], 0, 0
    static: float | None = None
    for x, y in batches:
        if hasattr(model, "forward_flops"):
            out, f = model.forward_flops(x)
            flops.append(f.double().cpu())
        else:
            if static is None:
                static = float(count_flops(model, x[:1])[0])
            out = model(x)
            flops.append(torch.full((len(x),), static, dtype=torch.float64))
        if y is not None and isinstance(out, Tensor) and out.dim() == 2:
            right += int((out.argmax(1) == y).sum())
            labelled += len(y)
    return torch.cat(flops), (right / labelled if labelled else None)


def measure_data(
    model: nn.Module,
    data: Any,
    *,
    baseline: nn.Module | None = None,
    examples: int | None = None,
    batch_size: int = 100,
    rounds: int = 5,
    threads: int | None = None,
    progress: bool | None = None,
) -> DataMeasurement:
    """Expected FLOPs, accuracy and measured time of ``model`` over ``data`` (see the module).

    Args:
        model: the model (a dynamic network, or any other).
        data: an :class:`~squeezer.data.ImageDataset` (read in order, ``batch_size`` at a
            time) or batches, ``(inputs, labels)`` or inputs alone.
        baseline: the model to compare against, timed alternately in the same run.
        examples: use the first this many examples (default: all).
        batch_size: for a dataset.
        rounds: timed passes per model; the median is reported.
        threads: intra-op threads while timing (default: the current setting).
        progress: a progress bar (default: when standard error is a terminal).
    """
    if rounds < 1 or batch_size < 1 or (examples is not None and examples < 1):
        raise ConfigError("measure over data: rounds, batch_size and examples must be >= 1")
    batches = _batches(data, examples, batch_size)
    count = sum(len(x) for x, _ in batches)
    models = [m for m in (baseline, model) if m is not None]
    modes = [m.training for m in models]
    before = torch.get_num_threads()
    quiet = not sys.stderr.isatty() if progress is None else not progress
    try:
        for m in models:
            m.eval()
        costs = [_cost(m, batches) for m in models]
        torch.set_num_threads(threads or before)
        times: list[list[float]] = [[] for _ in models]
        with torch.no_grad():
            for m in models:  # one untimed pass each: allocator and caches warm
                for x, _ in batches:
                    m(x)
            for _ in tqdm(range(rounds), desc="timing passes over the data", disable=quiet):
                for i, m in enumerate(models):
                    t0 = time.perf_counter()
                    for x, _ in batches:
                        m(x)
                    times[i].append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(before)
        for m, mode in zip(models, modes, strict=True):
            m.train(mode)
    results = []
    for m, (flops, top1), t in zip(models, costs, times, strict=True):
        results.append(DataCost(
            type(m).__name__, float(flops.mean()), float(flops.min()), float(flops.max()),
            sorted(t)[len(t) // 2], top1,
        ))  # fmt: skip
    return DataMeasurement(
        examples=count,
        batch_size=len(batches[0][0]),
        threads=threads or before,
        rounds=rounds,
        model=results[-1],
        baseline=results[0] if baseline is not None else None,
    )
