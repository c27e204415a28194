"""CP decomposition by alternating least squares, with PyTorch contractions.

TensorLy's NumPy ALS forms the Khatri-Rao product of the other factors explicitly; for a conv
kernel ``(N, C, k, k)`` and the kernel-size modes, that is an ``(N C k) x R`` matrix per update
(gigabytes for a 512-channel layer at rank 500). Here the matricized-tensor-times-Khatri-Rao
product is computed by contracting the kernel with one factor at a time, so every
intermediate stays near the kernel's own size, and an iteration of a 512 x 512 x 3 x 3 kernel
at rank 500 takes a fraction of a second. The initialization matches TensorLy's ``"svd"``:
leading left singular vectors of each unfolding, random columns beyond a mode's size.
"""

from __future__ import annotations

import string

import numpy as np
import torch
from torch import Tensor


def _mttkrp(x: Tensor, factors: list[Tensor], mode: int) -> Tensor:
    """``X_(mode) @ khatri_rao(other factors)`` without forming the Khatri-Rao product."""
    letters = string.ascii_lowercase[: x.dim()]
    out = x
    current = list(letters)
    for m in range(x.dim()):
        if m == mode:
            continue
        # contract mode m with factor m, introducing the rank index z the first time and
        # matching it (a Khatri-Rao column product) after that
        src = "".join(current)
        dst = "".join(c for c in current if c != letters[m]) + ("" if "z" in current else "z")
        out = torch.einsum(f"{src},{letters[m]}z->{dst}", out, factors[m])
        current = list(dst)
    return out  # (I_mode, R)


def cp_als(
    tensor: np.ndarray, rank: int, n_iter_max: int = 100, tol: float = 1e-8, seed: int = 0
) -> tuple[np.ndarray, list[np.ndarray]]:
    """CP decomposition ``tensor ~ sum_r w_r a_r (x) b_r (x) ...``.

    Returns:
        ``(weights, factors)`` as in TensorLy's ``CPTensor``: factor ``k`` has shape
        ``(tensor.shape[k], rank)`` with unit-norm columns.
    """
    x = torch.as_tensor(np.ascontiguousarray(tensor), dtype=torch.float64)
    gen = torch.Generator().manual_seed(seed)
    factors = []
    for mode, size in enumerate(x.shape):
        unfolding = x.movedim(mode, 0).reshape(size, -1)
        u = torch.linalg.svd(unfolding, full_matrices=False).U[:, :rank]
        if u.shape[1] < rank:
            extra = torch.randn(size, rank - u.shape[1], generator=gen, dtype=x.dtype)
            u = torch.cat((u, extra), dim=1)
        factors.append(u)
    norm_x = float(x.norm())
    previous = None
    for _ in range(n_iter_max):
        for mode in range(x.dim()):
            gram = torch.ones(rank, rank, dtype=x.dtype)
            for m, f in enumerate(factors):
                if m != mode:
                    gram = gram * (f.T @ f)
            m_ = _mttkrp(x, factors, mode)
            factors[mode] = torch.linalg.lstsq(gram, m_.T).solution.T
            if mode < x.dim() - 1:  # keep the others normalized for conditioning
                scale = factors[mode].norm(dim=0).clamp_min(1e-12)
                factors[mode] = factors[mode] / scale
                factors[-1] = factors[-1] * scale
        # relative error from the last update: ||X||^2 - 2 <X, Xhat> + ||Xhat||^2
        last = factors[-1]
        inner = float((m_ * last).sum())
        gram_all = torch.ones(rank, rank, dtype=x.dtype)
        for f in factors:
            gram_all = gram_all * (f.T @ f)
        err = max(norm_x**2 - 2 * inner + float(gram_all.sum()), 0.0) ** 0.5 / max(norm_x, 1e-12)
        if previous is not None and abs(previous - err) < tol:
            break
        previous = err
    weights = factors[-1].norm(dim=0).clamp_min(1e-300)
    factors[-1] = factors[-1] / weights
    return weights.numpy(), [f.numpy() for f in factors]
