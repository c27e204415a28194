"""Activation range observers for int8 calibration: min-max, percentile, MSE and entropy (KL).

Each observer watches a tensor during calibration and then chooses the float range
``[lo, hi]`` that 256 uint8 levels cover; values outside are clipped. A wide range wastes
levels on rare outliers, a narrow one clips them, and the four observers trade these off
differently:

- ``minmax``: the whole observed range (Jacob et al. 2018); no clipping, coarse steps.
- ``percentile``: the range between the ``100 - p`` and ``p`` percentiles of the observed
  values (p = 99.99 by default), as NVIDIA's and ONNX Runtime's calibrators offer.
- ``mse``: the range that minimizes the squared quantization error of the observed histogram
  (PyTorch's ``HistogramObserver``, the x86 default).
- ``entropy``: the clipping threshold that minimizes the KL divergence between the observed
  distribution and its 8-bit quantized form (Migacz 2017, TensorRT's calibration); tensors
  with both signs get a symmetric threshold on ``|x|`` (128 levels a side). As NVIDIA's
  calibrator does, the first bin's count is replaced by the second's before the search: the
  spike of exact zeros a ReLU leaves would otherwise dominate the divergence and push the
  threshold down to an eighth or a quarter of the range (ResNet-20 lost 14 points that way).

All but ``minmax`` keep a 2048-bin histogram of every observed tensor (torchao's
``HistogramObserver`` merges batches with differing ranges); the choice is made once, when
the quantization parameters are computed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

OBSERVERS = ("minmax", "percentile", "mse", "entropy")


def _histogram_observer() -> type:
    from torchao.quantization.pt2e.observer import HistogramObserver

    return HistogramObserver


def _bins(observer: Any) -> tuple[np.ndarray, float, float]:
    return (
        observer.histogram.detach().double().cpu().numpy(),
        float(observer.min_val),
        float(observer.max_val),
    )


def percentile_range(
    hist: np.ndarray, lo: float, hi: float, percentile: float
) -> tuple[float, float]:
    """The ``100 - percentile`` and ``percentile`` points of the histogram over ``[lo, hi]``."""
    total = hist.sum()
    if total <= 0 or hi <= lo:
        return lo, hi
    edges = np.linspace(lo, hi, len(hist) + 1)
    cum = np.cumsum(hist) / total
    tail = 1.0 - percentile / 100.0
    first = int(np.searchsorted(cum, tail, side="right"))
    last = int(np.searchsorted(cum, 1.0 - tail, side="left"))
    new_lo = lo if lo >= 0 else float(edges[min(first, len(hist) - 1)])
    new_hi = float(edges[min(last + 1, len(hist))])
    return min(new_lo, 0.0), max(new_hi, 0.0)


def kl_threshold(hist: np.ndarray, levels: int = 256) -> int:
    """The number of leading bins of ``hist`` to keep (the rest clipped into the last kept
    bin) that minimizes KL(P || Q), Q being P quantized to ``levels`` levels (Migacz 2017).
    """
    n = len(hist)
    if n <= levels:
        return n
    best, best_kl = n, float("inf")
    for i in range(levels, n + 1, max(1, (n - levels) // 256)):
        p = hist[:i].astype(np.float64).copy()
        p[-1] += hist[i:].sum()
        if p.sum() <= 0:
            continue
        nonzero = p > 0
        # Q: merge the i bins into `levels` groups, spread each group's mass evenly over its
        # non-empty bins
        src = hist[:i].astype(np.float64)
        starts = np.array([g[0] for g in np.array_split(np.arange(i), levels)])
        group = np.repeat(np.arange(levels), np.diff(np.append(starts, i)))
        mass = np.add.reduceat(src, starts)
        used = np.add.reduceat((src > 0).astype(np.float64), starts)
        q = np.where(src > 0, mass[group] / np.maximum(used[group], 1), 0.0)
        q_sum, p_sum = q.sum(), p.sum()
        if q_sum <= 0:
            continue
        p, q = p / p_sum, q / q_sum
        bad = nonzero & (q <= 0)
        if bad.any():  # a bin P has and Q lacks: infinite divergence, unless smoothed
            q = np.where(bad, 1e-12, q)
        kl = float(np.sum(p[nonzero] * np.log(p[nonzero] / q[nonzero])))
        if kl < best_kl:
            best, best_kl = i, kl
    return best


def _without_zero_spike(hist: np.ndarray) -> np.ndarray:
    out = hist.astype(np.float64).copy()
    if len(out) > 1:
        out[0] = out[1]
    return out


def entropy_range(hist: np.ndarray, lo: float, hi: float) -> tuple[float, float]:
    """The KL-optimal clipping range for a histogram over ``[lo, hi]``: one-sided for
    non-negative tensors, symmetric on ``|x|`` for tensors of both signs."""
    if hist.sum() <= 0 or hi <= lo:
        return lo, hi
    width = (hi - lo) / len(hist)
    if lo >= 0:  # one-sided: clip the top only (the range always includes zero)
        return 0.0, min(hi, lo + kl_threshold(_without_zero_spike(hist)) * width)
    centres = lo + (np.arange(len(hist)) + 0.5) * width
    mags = np.abs(centres)
    top = max(-lo, hi)
    n = int(np.ceil(top / width))
    folded = np.zeros(max(n, 1))
    np.add.at(folded, np.minimum((mags / width).astype(int), len(folded) - 1), hist)
    keep = kl_threshold(_without_zero_spike(folded), levels=128)  # 256 levels over [-t, t]
    t = keep * width
    return max(lo, -t), min(hi, t)


def observer_class(name: str, percentile: float = 99.99) -> Any:
    """The torchao observer constructor (``with_args`` applied) for observer ``name``."""
    from torchao.quantization.pt2e.observer import MinMaxObserver

    extra = {"eps": 2**-12}
    if name == "minmax":
        return MinMaxObserver.with_args(**extra)
    if name == "mse":
        return _histogram_observer().with_args(**extra)
    if name == "percentile":
        return _percentile_type().with_args(percentile=percentile, **extra)
    if name == "entropy":
        return _entropy_type().with_args(**extra)
    raise ValueError(f"unknown observer {name!r}")


_TYPES: dict[str, type] = {}


def _percentile_type() -> type:
    if "percentile" not in _TYPES:
        base = _histogram_observer()

        class PercentileObserver(base):  # type: ignore[misc, valid-type]
            """A histogram observer whose range is a pair of percentiles."""

            def __init__(self, *args: Any, percentile: float = 99.99, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                self.percentile = percentile

            def _non_linear_param_search(self) -> tuple[torch.Tensor, torch.Tensor]:
                lo, hi = percentile_range(*_bins(self), self.percentile)
                return torch.tensor(lo), torch.tensor(hi)

        _TYPES["percentile"] = PercentileObserver
    return _TYPES["percentile"]


def _entropy_type() -> type:
    if "entropy" not in _TYPES:
        base = _histogram_observer()

        class EntropyObserver(base):  # type: ignore[misc, valid-type]
            """A histogram observer whose range minimizes the KL divergence (TensorRT)."""

            def _non_linear_param_search(self) -> tuple[torch.Tensor, torch.Tensor]:
                lo, hi = entropy_range(*_bins(self))
                return torch.tensor(lo), torch.tensor(hi)

        _TYPES["entropy"] = EntropyObserver
    return _TYPES["entropy"]
