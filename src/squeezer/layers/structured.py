"""Structured-matrix linear layers: O(n) parameters and O(n log n) products.

Each layer stands for an explicit ``out x in`` matrix (``dense()`` builds it, for tests and for
fitting), is trainable from random initialization, and can be fit to an existing
``nn.Linear`` by least squares with ``from_linear``. Rectangular shapes are handled by padding
the input with zeros to the transform size ``n`` and keeping the first ``out_features`` outputs
(Fastfood stacks several ``n x n`` blocks when ``out_features > n``).

- :class:`CirculantLinear`: circulant projection with a random sign flip, computed with the FFT
  (Cheng et al. 2015, "An exploration of parameter redundancy in deep networks with circulant
  projections").
- :class:`FastfoodLinear`: Adaptive Fastfood ``S H G Pi H B`` with a fast Walsh-Hadamard
  transform (Yang et al. 2015, "Deep Fried Convnets").
- :class:`LDRLinear`: Toeplitz-like matrices of low displacement rank,
  ``sum_i Z_1(g_i) Z_-1(h_i)`` (Sindhwani et al. 2015, "Structured transforms for small-footprint
  deep learning").
- :class:`ACDCLinear`: a cascade of ``A C D C^-1`` factors, diagonal ``A``, ``D`` and the DCT
  ``C``, with fixed permutations between factors (Moczulski et al. 2016, "ACDC: a structured
  efficient linear layer").
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from squeezer.core.spec import register_layer
from squeezer.errors import ConfigError

__all__ = [
    "ACDCLinear",
    "CirculantLinear",
    "FastfoodLinear",
    "LDRLinear",
    "dct",
    "fwht",
    "idct",
]


def _pad(x: Tensor, n: int) -> Tensor:
    return x if x.shape[-1] == n else nn.functional.pad(x, (0, n - x.shape[-1]))


def _signs(n: int, seed: int) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 2, (n,), generator=g).float() * 2 - 1


def _log2(n: int) -> int:
    return max(1, (n - 1).bit_length())


def fwht(x: Tensor) -> Tensor:
    """Orthonormal fast Walsh-Hadamard transform over the last dimension (a power of two)."""
    n = x.shape[-1]
    if n & (n - 1):
        raise ConfigError(f"the Walsh-Hadamard transform needs a power of two, got {n}")
    lead = x.shape[:-1]
    h = 1
    y = x
    while h < n:
        y = y.reshape(*lead, n // (2 * h), 2, h)
        a, b = y[..., 0, :], y[..., 1, :]
        y = torch.stack((a + b, a - b), dim=-2)
        h *= 2
    return y.reshape(*lead, n) / math.sqrt(n)


def _half_angle(n: int, like: Tensor) -> tuple[Tensor, Tensor]:
    t = torch.arange(n, dtype=like.dtype, device=like.device) * (math.pi / (2 * n))
    return torch.cos(t), torch.sin(t)


def dct(x: Tensor) -> Tensor:
    """Orthonormal DCT-II over the last dimension, through one real FFT of length ``n``
    (Makhoul). Real arithmetic only, so it exports to ONNX (``DFT``)."""
    n = x.shape[-1]
    v = torch.cat((x[..., ::2], x[..., 1::2].flip(-1)), dim=-1)
    spec = torch.view_as_real(torch.fft.rfft(v, dim=-1))
    # the spectrum of a real sequence is Hermitian: bins above n/2 mirror those below
    m = n - n // 2
    re = torch.cat((spec[..., 0], spec[..., 1:m, 0].flip(-1)), dim=-1)
    im = torch.cat((spec[..., 1], -spec[..., 1:m, 1].flip(-1)), dim=-1)
    cos, sin = _half_angle(n, x)
    y = (re * cos + im * sin) * math.sqrt(2.0 / n)  # Re(spec * exp(-i pi k / 2n))
    return torch.cat((y[..., :1] / math.sqrt(2.0), y[..., 1:]), dim=-1)


def idct(y: Tensor) -> Tensor:
    """Inverse of :func:`dct` (the orthonormal DCT-III), through one inverse real FFT."""
    n = y.shape[-1]
    c = torch.cat((y[..., :1] * math.sqrt(n), y[..., 1:] * math.sqrt(n / 2.0)), dim=-1)
    c_rev = torch.cat((torch.zeros_like(c[..., :1]), c[..., 1:].flip(-1)), dim=-1)
    cos, sin = _half_angle(n, y)
    h = n // 2 + 1  # exp(i pi k / 2n) (c - i c_rev) is Hermitian: its first h bins suffice
    re = cos[:h] * c[..., :h] + sin[:h] * c_rev[..., :h]
    im = sin[:h] * c[..., :h] - cos[:h] * c_rev[..., :h]
    v = torch.fft.irfft(torch.view_as_complex(torch.stack((re, im), dim=-1)), n=n, dim=-1)
    half = (n + 1) // 2
    even, odd = v[..., :half], v[..., half:].flip(-1)
    if n % 2:
        odd = torch.cat((odd, torch.zeros_like(odd[..., :1])), dim=-1)
    return torch.stack((even, odd), dim=-1).flatten(-2)[..., :n]


class _StructuredLinear(nn.Module):
    """Shared plumbing: bias, ``dense()`` from the identity, least-squares fitting."""

    in_features: int
    out_features: int
    spec_extra: tuple[str, ...] = ()  # constructor arguments beyond the shape and bias

    def spec_args(self) -> dict[str, Any]:
        """Constructor arguments, for :func:`squeezer.layers.module_spec`."""
        extra = {k: getattr(self, k) for k in self.spec_extra}
        return {
            "in_features": self.in_features,
            "out_features": self.out_features,
            "bias": self.bias is not None,
            **extra,
        }

    def _init_bias(self, bias: bool) -> None:
        if bias:
            self.bias = nn.Parameter(torch.zeros(self.out_features))
        else:
            self.register_parameter("bias", None)

    def transform(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        y = self.transform(x)
        return y if self.bias is None else y + self.bias

    def dense(self) -> Tensor:
        """The explicit ``out_features x in_features`` matrix this layer applies."""
        eye = torch.eye(self.in_features, dtype=self._dtype(), device=self._device())
        return self.transform(eye).T

    def _dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}"
        )

    def fit_(self, weight: Tensor, steps: int = 500, lr: float = 0.01) -> float:
        """Minimize ``||dense() - weight||_F^2`` with Adam; returns the relative error."""
        target = weight.detach().to(self._dtype())
        params = [p for n, p in self.named_parameters() if n != "bias"]
        opt = torch.optim.Adam(params, lr=lr)
        for _ in range(steps):
            opt.zero_grad()
            loss = (self.dense() - target).pow(2).sum()
            loss.backward()
            opt.step()
        return self.relative_error(target)

    @torch.no_grad()
    def relative_error(self, weight: Tensor) -> float:
        """``||dense() - weight||_F / ||weight||_F``."""
        return float((self.dense() - weight).norm() / weight.norm().clamp_min(1e-12))

    @classmethod
    def from_linear(cls, linear: nn.Linear, **kwargs: Any) -> _StructuredLinear:
        """A layer of this type fit to ``linear``'s weight by least squares (bias copied)."""
        layer = cls(linear.in_features, linear.out_features, bias=linear.bias is not None, **kwargs)
        layer.to(linear.weight.dtype)
        layer.fit_weight_(linear.weight.detach())
        if linear.bias is not None:
            with torch.no_grad():
                layer.bias.copy_(linear.bias)
        return layer

    def fit_weight_(self, weight: Tensor) -> float:
        return self.fit_(weight)


@register_layer
class CirculantLinear(_StructuredLinear):
    """``y = C(c) D x`` truncated to ``out_features``: ``n = max(in, out)`` parameters.

    ``C(c)`` is the circulant matrix with first column ``c``; ``D`` a fixed random sign
    diagonal (a buffer). The product costs two real FFTs of length ``n``.
    """

    spec_extra = ("seed",)

    def __init__(
        self, in_features: int, out_features: int, bias: bool = True, seed: int = 0
    ) -> None:
        super().__init__()
        self.in_features, self.out_features, self.seed = in_features, out_features, seed
        self.n = max(in_features, out_features)
        self.c = nn.Parameter(torch.randn(self.n) / math.sqrt(in_features))
        self.register_buffer("signs", _signs(self.n, seed))
        self._init_bias(bias)

    def flops_per_row(self) -> int:
        """Three real FFTs (2.5 n log2 n each), the spectral product and the sign flip."""
        n = self.n
        return int(7.5 * n * _log2(n)) + 4 * n

    def transform(self, x: Tensor) -> Tensor:
        v = _pad(x, self.n) * self.signs
        y = torch.fft.irfft(torch.fft.rfft(self.c) * torch.fft.rfft(v, dim=-1), n=self.n, dim=-1)
        return y[..., : self.out_features]

    @torch.no_grad()
    def fit_weight_(self, weight: Tensor) -> float:
        """Closed-form least squares: ``c[k]`` is the mean of the signed weights on diagonal k."""
        out, inp = weight.shape
        signed = weight * self.signs[:inp]
        i = torch.arange(out).unsqueeze(1)
        j = torch.arange(inp).unsqueeze(0)
        k = ((i - j) % self.n).reshape(-1)
        total = torch.zeros(self.n, dtype=weight.dtype).index_add_(0, k, signed.reshape(-1))
        count = torch.zeros(self.n, dtype=weight.dtype).index_add_(
            0, k, torch.ones_like(signed).reshape(-1)
        )
        self.c.copy_(total / count.clamp_min(1))
        return self.relative_error(weight)


@register_layer
class FastfoodLinear(_StructuredLinear):
    """Adaptive Fastfood: ``V = S H G Pi H B`` per block, ``n`` the next power of two of ``in``.

    ``S``, ``G`` and ``B`` are learned diagonals, ``Pi`` a fixed random permutation and ``H``
    the orthonormal Walsh-Hadamard transform; ``ceil(out / n)`` blocks are stacked. 3n
    parameters and O(n log n) operations per block.
    """

    spec_extra = ("seed",)

    def __init__(
        self, in_features: int, out_features: int, bias: bool = True, seed: int = 0
    ) -> None:
        super().__init__()
        self.in_features, self.out_features, self.seed = in_features, out_features, seed
        self.n = 1 << max(0, (in_features - 1).bit_length())
        self.blocks = -(-out_features // self.n)
        g = torch.Generator().manual_seed(seed)
        scale = math.sqrt(self.n / in_features)  # keep the output variance near the input's
        self.B = nn.Parameter(torch.randint(0, 2, (self.blocks, self.n), generator=g) * 2.0 - 1)
        self.G = nn.Parameter(torch.randn(self.blocks, self.n, generator=g) * scale)
        self.S = nn.Parameter(torch.ones(self.blocks, self.n))
        self.register_buffer(
            "perm", torch.stack([torch.randperm(self.n, generator=g) for _ in range(self.blocks)])
        )
        self._init_bias(bias)

    def flops_per_row(self) -> int:
        """Per block: two Walsh-Hadamard transforms (n log2 n additions each), three diagonals."""
        n = self.n
        return self.blocks * (2 * n * _log2(n) + 3 * n)

    def transform(self, x: Tensor) -> Tensor:
        v = _pad(x, self.n).unsqueeze(-2) * self.B  # (..., blocks, n)
        v = fwht(v)
        v = torch.gather(v, -1, self.perm.expand(*v.shape[:-2], -1, -1)) * self.G
        v = fwht(v) * self.S
        return v.reshape(*x.shape[:-1], self.blocks * self.n)[..., : self.out_features]

    @torch.no_grad()
    def fit_weight_(self, weight: Tensor, sweeps: int = 30) -> float:
        """Alternating exact least squares on ``S``, ``G`` and ``B`` (each is linear alone)."""
        n, inp = self.n, self.in_features
        target = torch.zeros(self.blocks * n, n, dtype=weight.dtype)
        target[: self.out_features, :inp] = weight
        h = fwht(torch.eye(n, dtype=weight.dtype))  # symmetric orthonormal Hadamard
        for b in range(self.blocks):
            w = target[b * n : (b + 1) * n]
            p = h[self.perm[b]]  # Pi H: row k of Pi H is row perm[k] of H
            for _ in range(sweeps):
                # S: V = diag(S) A with A = H diag(G) Pi H diag(B); rows independent
                a = h @ (self.G[b].unsqueeze(1) * p) * self.B[b]
                self.S[b] = (a * w).sum(1) / (a * a).sum(1).clamp_min(1e-12)
                # B: columns independent; V = A' diag(B), A' = diag(S) H diag(G) Pi H
                a = self.S[b].unsqueeze(1) * (h @ (self.G[b].unsqueeze(1) * p))
                self.B[b, :inp] = (a * w).sum(0)[:inp] / (a * a).sum(0)[:inp].clamp_min(1e-12)
                # G: V = sum_k G_k outer(S * H[:, k], (Pi H diag(B))[k, :])
                q = p * self.B[b]
                left = h * self.S[b].unsqueeze(1)  # column k: S * H[:, k]
                gram = (left.T @ left) * (q @ q.T)
                rhs = ((left.T @ w) * q).sum(1)
                self.G[b] = torch.linalg.lstsq(gram, rhs.unsqueeze(1)).solution.squeeze(1)
        return self.relative_error(weight)


@register_layer
class LDRLinear(_StructuredLinear):
    """Toeplitz-like matrix of displacement rank ``rank``: ``sum_i Z_1(g_i) Z_-1(h_i)``.

    ``Z_1(v)`` is the circulant and ``Z_-1(v)`` the skew-circulant matrix with first column
    ``v``; both are applied with real FFTs (the skew-circulant as a negacyclic convolution,
    through FFTs of length 2n), so the product costs O(rank n log n) and exports to ONNX.
    2 rank n parameters.
    """

    spec_extra = ("rank",)

    def __init__(
        self, in_features: int, out_features: int, bias: bool = True, rank: int = 1
    ) -> None:
        super().__init__()
        if rank < 1:
            raise ConfigError(f"displacement rank must be at least 1, got {rank}")
        self.in_features, self.out_features, self.rank = in_features, out_features, rank
        self.n = max(in_features, out_features)
        self.g = nn.Parameter(torch.randn(rank, self.n) / math.sqrt(self.n))
        self.h = nn.Parameter(torch.randn(rank, self.n) / math.sqrt(in_features * rank))
        self._init_bias(bias)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", rank={self.rank}"

    def flops_per_row(self) -> int:
        """Per displacement rank: six real FFTs (three of length 2n for the negacyclic
        convolution, three of length n for the circulant one; about 22.5 n log2 n together)
        and the products."""
        n = self.n
        return self.rank * (int(22.5 * n * _log2(n)) + 20 * n)

    def transform(self, x: Tensor) -> Tensor:
        n = self.n
        v = _pad(x, n).unsqueeze(-2)
        # skew-circulant Z_-1(h) x is the negacyclic convolution of h and x: a linear
        # convolution (real FFTs of length 2n) with the wrapped-around half subtracted
        full = torch.fft.irfft(
            torch.fft.rfft(self.h, n=2 * n) * torch.fft.rfft(v, n=2 * n, dim=-1), n=2 * n, dim=-1
        )
        u = full[..., :n] - full[..., n:]  # (..., rank, n)
        y = torch.fft.irfft(torch.fft.rfft(self.g) * torch.fft.rfft(u, dim=-1), n=n, dim=-1)
        return y.sum(-2)[..., : self.out_features]

    def fit_weight_(self, weight: Tensor) -> float:
        return self.fit_(weight, steps=800, lr=0.02)


@register_layer
class ACDCLinear(_StructuredLinear):
    """A cascade of ``depth`` factors ``A C D C^-1`` with fixed permutations in between.

    ``A`` and ``D`` are learned diagonals initialized near one, ``C`` the orthonormal DCT-II
    (computed with an FFT). 2 depth n parameters, O(depth n log n) operations.
    """

    spec_extra = ("depth", "seed")

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        depth: int = 2,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ConfigError(f"ACDC depth must be at least 1, got {depth}")
        self.in_features, self.out_features = in_features, out_features
        self.depth, self.seed = depth, seed
        self.n = max(in_features, out_features)
        g = torch.Generator().manual_seed(seed)
        self.A = nn.Parameter(1 + 0.1 * torch.randn(depth, self.n, generator=g))
        self.D = nn.Parameter(1 + 0.1 * torch.randn(depth, self.n, generator=g))
        self.register_buffer(
            "perm", torch.stack([torch.randperm(self.n, generator=g) for _ in range(depth)])
        )
        self._init_bias(bias)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", depth={self.depth}"

    def flops_per_row(self) -> int:
        """Per factor: a DCT and an inverse DCT (one real FFT each, 2.5 n log2 n), their
        twiddles and two diagonals."""
        n = self.n
        return self.depth * (5 * n * _log2(n) + 14 * n)

    def transform(self, x: Tensor) -> Tensor:
        v = _pad(x, self.n)
        for i in range(self.depth):
            if i:
                v = v[..., self.perm[i]]
            v = self.A[i] * dct(self.D[i] * idct(v))
        return v[..., : self.out_features]

    def fit_weight_(self, weight: Tensor) -> float:
        return self.fit_(weight, steps=800, lr=0.02)
