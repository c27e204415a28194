"""Rank selection: absolute, fractional, VBMF, singular-value energy, or a cost target.

A rank *spec* is one of:

- an ``int`` >= 1: that rank (capped at the full rank);
- a ``float`` in (0, 1]: that fraction of the full rank of each mode, rounded up (1.0 keeps the
  full rank and so reproduces the layer);
- ``"vbmf"``: empirical variational Bayesian matrix factorization of each mode's unfolding
  (Nakajima et al. 2013), the selection Kim et al. 2016 use for Tucker-2;
- ``"energy:E"``: the smallest rank keeping a fraction E of the squared singular values;
- ``"compression:C"`` or ``"flops:F"``: the largest fraction of full rank whose factorized layer
  has at least C times fewer parameters, or F times fewer FLOPs, than the original.

Strings of numbers (``"8"``, ``"0.25"``) are accepted too, as the command line passes them.

A spec may also carry ``round_to`` (a method's ``round_to`` field): every rank is then a
multiple of it (or the full rank), which the CPU's blocked kernels run far faster than odd
widths. Per-mode ranks round up; for a compression or FLOPs target the search runs over the
rounded ranks, so the target still holds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar

from squeezer.errors import ConfigError

RankLike = int | float | str

KINDS = ("absolute", "fraction", "vbmf", "energy", "compression", "flops")


@dataclass(frozen=True)
class RankSpec:
    """A parsed rank spec: ``kind`` in :data:`KINDS` and its number (unused for vbmf)."""

    kind: str
    value: float = 0.0
    round_to: int = 1

    def __str__(self) -> str:
        if self.kind == "absolute":
            return str(int(self.value))
        if self.kind == "fraction":
            return str(float(self.value))  # "1.0", never "1" (an absolute rank)
        if self.kind == "vbmf":
            return "vbmf"
        return f"{self.kind}:{self.value:g}"


def parse_rank(spec: RankLike | RankSpec) -> RankSpec:
    """Parse a rank spec (see the module docstring).

    Raises:
        ConfigError: the spec is none of the accepted forms.
    """
    if isinstance(spec, RankSpec):
        return spec
    if isinstance(spec, bool):
        raise ConfigError(f"invalid rank {spec!r}")
    if isinstance(spec, str):
        text = spec.strip().lower()
        if text == "vbmf":
            return RankSpec("vbmf")
        kind, sep, number = text.partition(":")
        if sep:
            try:
                value = float(number)
            except ValueError:
                raise ConfigError(f"invalid rank {spec!r}: {number!r} is not a number") from None
            if kind == "energy" and 0 < value <= 1:
                return RankSpec("energy", value)
            if kind in ("compression", "flops") and value >= 1:
                return RankSpec(kind, value)
            raise ConfigError(
                f"invalid rank {spec!r}: energy:E needs 0 < E <= 1, compression:C and flops:F "
                "need a factor >= 1"
            )
        try:
            spec = int(text) if text.isdigit() else float(text)
        except ValueError:
            raise ConfigError(
                f"invalid rank {spec!r}: give an int, a fraction in (0, 1], 'vbmf', "
                "'energy:E', 'compression:C' or 'flops:F'"
            ) from None
    if isinstance(spec, int):
        if spec < 1:
            raise ConfigError(f"invalid rank {spec}: an absolute rank must be >= 1")
        return RankSpec("absolute", spec)
    if isinstance(spec, float):
        if not 0 < spec <= 1:
            raise ConfigError(f"invalid rank {spec}: a fractional rank must be in (0, 1]")
        return RankSpec("fraction", spec)
    raise ConfigError(f"invalid rank {spec!r}")


def _tau(x: np.ndarray, alpha: float) -> np.ndarray:
    return 0.5 * (x - (1 + alpha) + np.sqrt((x - (1 + alpha)) ** 2 - 4 * alpha))


def _evb_free_energy(
    sigma2: float, rows: int, cols: int, s: np.ndarray, residual: float, xubar: float
) -> float:
    # Free energy of empirical VBMF as a function of the noise variance (Nakajima et al. 2013,
    # up to constants), with the other hyperparameters at their analytic optimum.
    alpha = rows / cols
    x = s**2 / (cols * sigma2)
    big, small = x[x > xubar], x[x <= xubar]
    tau = _tau(big, alpha)
    return float(
        np.sum(small - np.log(small))
        + np.sum(big - tau)
        + np.sum(np.log((tau + 1) / big))
        + alpha * np.sum(np.log(tau / alpha + 1))
        + residual / (cols * sigma2)
        + (rows - len(s)) * math.log(sigma2)
    )


def vbmf_rank(matrix: np.ndarray) -> int:
    """The rank empirical VBMF estimates for ``matrix`` (noise variance estimated too).

    Implements the global analytic solution of Nakajima, Sugiyama, Babacan and Tomioka (2013):
    the noise variance minimizes the free energy, and the components whose singular values pass
    the resulting threshold are kept. Returns at least 1.
    """
    y = np.asarray(matrix, dtype=np.float64)
    if y.shape[0] > y.shape[1]:
        y = y.T
    rows, cols = y.shape
    if rows < 2:
        return 1  # a single row or column: rank one is all there is
    s = np.linalg.svd(y, compute_uv=False)
    alpha = rows / cols
    tauubar = 2.5129 * math.sqrt(alpha)
    xubar = (1 + tauubar) * (1 + alpha / tauubar)
    total = float(np.sum(y**2))
    residual = max(total - float(np.sum(s**2)), 0.0)
    eh_ub = int(min(math.ceil(rows / (1 + alpha)) - 1, rows)) - 1
    eh_ub = max(0, min(eh_ub, len(s) - 2))
    upper = (total) / (rows * cols)
    tail = s[eh_ub + 1 :]
    lower = max(s[eh_ub + 1] ** 2 / (cols * xubar), float(np.mean(tail**2)) / cols)
    if not upper > lower > 0:
        return 1
    res = minimize_scalar(
        _evb_free_energy,
        args=(rows, cols, s, residual, xubar),
        bounds=(lower, upper),
        method="bounded",
    )
    threshold = math.sqrt(cols * res.x * (1 + tauubar) * (1 + alpha / tauubar))
    return max(1, int(np.sum(s > threshold)))


def energy_rank(singular_values: np.ndarray, energy: float) -> int:
    """Smallest rank whose squared singular values hold ``energy`` of the total."""
    sq = np.asarray(singular_values, dtype=np.float64) ** 2
    if sq.sum() <= 0:
        return 1
    cum = np.cumsum(sq) / sq.sum()
    return int(min(len(sq), np.searchsorted(cum, energy - 1e-12) + 1))


def round_rank(rank: int, full: int, multiple: int) -> int:
    """``rank`` rounded up to a multiple of ``multiple``, at most ``full``."""
    if multiple <= 1:
        return rank
    return min(full, max(multiple, math.ceil(rank / multiple) * multiple))


def mode_rank(spec: RankSpec, unfolding: np.ndarray | None, full: int) -> int:
    """The rank of one mode for absolute, fraction, vbmf and energy specs (rounded up to a
    multiple of ``spec.round_to``)."""
    return round_rank(_mode_rank(spec, unfolding, full), full, spec.round_to)


def _mode_rank(spec: RankSpec, unfolding: np.ndarray | None, full: int) -> int:
    if spec.kind == "absolute":
        return max(1, min(full, int(spec.value)))
    if spec.kind == "fraction":
        return max(1, min(full, math.ceil(spec.value * full - 1e-9)))
    if unfolding is None:
        raise ConfigError(f"rank {spec} needs the layer's weights")
    if spec.kind == "vbmf":
        return min(full, vbmf_rank(unfolding))
    if spec.kind == "energy":
        s = np.linalg.svd(np.asarray(unfolding, dtype=np.float64), compute_uv=False)
        return min(full, energy_rank(s, spec.value))
    raise ConfigError(f"rank {spec} is not a per-mode rank")


def select_ranks(
    spec: RankSpec,
    unfoldings: Sequence[np.ndarray | None],
    full: Sequence[int],
    cost: Callable[[Sequence[int]], tuple[float, float]] | None = None,
    original: tuple[float, float] | None = None,
) -> list[int]:
    """Ranks, one per mode, for ``spec``.

    Args:
        spec: the parsed rank spec.
        unfoldings: per mode, the matrix whose rank is chosen (for vbmf and energy).
        full: per mode, the full rank.
        cost: ranks -> (parameters, FLOPs) of the factorized layer (for targets).
        original: (parameters, FLOPs) of the original layer (for targets).
    """
    if spec.kind in ("compression", "flops"):
        if cost is None or original is None:
            raise ConfigError(f"rank {spec} needs the layer's cost model")
        return ranks_for_target(spec, full, cost, original)
    return [mode_rank(spec, u, f) for u, f in zip(unfoldings, full, strict=True)]


def ranks_for_target(
    spec: RankSpec,
    full: Sequence[int],
    cost: Callable[[Sequence[int]], tuple[float, float]],
    original: tuple[float, float],
) -> list[int]:
    """The largest common fraction of full ranks meeting a compression or FLOPs target.

    ``cost(ranks)`` gives the factorized layer's (parameters, FLOPs); ``original`` the layer's.
    If even rank 1 misses the target, rank 1 is returned (the closest one can get); with
    ``spec.round_to``, only multiples of it (or full ranks) are considered, and the smallest of
    them is the closest.
    """
    which = 0 if spec.kind == "compression" else 1
    budget = original[which] / spec.value

    def ranks_at(f: float) -> list[int]:
        return [round_rank(max(1, min(n, math.ceil(f * n - 1e-9))), n, spec.round_to) for n in full]

    lo, hi = 0.0, 1.0
    if cost(ranks_at(1.0))[which] <= budget:
        return ranks_at(1.0)
    for _ in range(40):
        mid = (lo + hi) / 2
        if cost(ranks_at(mid))[which] <= budget:
            lo = mid
        else:
            hi = mid
    return ranks_at(lo) if lo > 0 else [round_rank(1, n, spec.round_to) for n in full]
