"""Per-layer converters: each replaces a trained layer by a block of plain PyTorch layers.

- :class:`SVD`: truncated SVD of a Linear into two Linears (Denton et al. 2014; Sainath et al.
  2013; Denil et al. 2013).
- :class:`Separable`: a k x k conv as a k x 1 conv to K maps, then a 1 x k conv (Jaderberg et al.
  2014, scheme 2), with the closed-form optimum of Tai et al. 2016 (SVD of the kernel reshaped
  to ``(C kh) x (N kw)``).
- :class:`LowRankBN`: the same two convs with BatchNorm between them, trainable from scratch
  (Tai et al. 2016, "Convolutional neural networks with low-rank regularization").
- :class:`CP`: CP decomposition of the kernel into 1x1, kx1 depthwise, 1xk depthwise, 1x1
  (Lebedev et al. 2015), computed with TensorLy's ALS.
- :class:`Tucker`: Tucker-2 into 1x1, k x k core, 1x1 (Kim et al. 2016), computed with TensorLy,
  ranks by VBMF on the two channel unfoldings if asked.
- :class:`TensorTrain`: a Linear as a :class:`~squeezer.layers.TTLinear` (Novikov et al. 2015).

A float rank is a fraction of each mode's full rank, so ``rank=1.0`` reproduces the layer for
every method except CP, whose exact rank is not computable in general (there 1.0 means the
upper bound ``prod(dims) / max(dims)`` and ALS gets close, not exact).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from squeezer.config import check
from squeezer.factorization.base import (
    Conversion,
    Factorization,
    conv_like,
    copy_bias,
    pair,
    select,
    to_param,
    unfold,
    weight_array,
)
from squeezer.factorization.cp_als import cp_als
from squeezer.factorization.rank import RankSpec
from squeezer.layers import TTLinear, tt_modes


@dataclass(frozen=True)
class SVD(Factorization):
    """Truncated SVD of a Linear ``W = U S V^T`` into ``Linear(in, r)`` then ``Linear(r, out)``."""

    handles: ClassVar = (nn.Linear,)
    method: ClassVar[str] = "svd"

    def convert(self, module: nn.Module, spec: RankSpec) -> Conversion:
        assert isinstance(module, nn.Linear)
        w = weight_array(module)
        out, inp = w.shape
        (r,) = select(spec, [w], [min(out, inp)], lambda r: r[0] * (out + inp), out * inp)
        u, s, vt = np.linalg.svd(w, full_matrices=False)
        root = np.sqrt(s[:r])
        first = nn.Linear(inp, r, bias=False).to(module.weight.dtype)
        second = nn.Linear(r, out, bias=module.bias is not None).to(module.weight.dtype)
        first.weight = to_param(root[:, None] * vt[:r], module.weight)
        second.weight = to_param(u[:, :r] * root[None, :], module.weight)
        copy_bias(second, module)
        approx = (u[:, :r] * s[:r]) @ vt[:r]
        return Conversion(nn.Sequential(first, second), [r], torch.as_tensor(approx))


def _separable_factors(conv: nn.Conv2d, spec: RankSpec):
    w = weight_array(conv)  # (N, C, kh, kw)
    n, c, kh, kw = w.shape
    sw = conv.stride[1]
    m = w.transpose(1, 2, 0, 3).reshape(c * kh, n * kw)  # rows (c, y), columns (n, x)
    (k,) = select(
        spec,
        [m],
        [min(c * kh, n * kw)],
        lambda r: r[0] * (c * kh + n * kw),
        n * c * kh * kw,
        lambda r: r[0] * (c * kh * sw + kw * n),
        n * c * kh * kw,
    )
    u, s, vt = np.linalg.svd(m, full_matrices=False)
    root = np.sqrt(s[:k])
    vertical = (u[:, :k] * root).T.reshape(k, c, kh, 1)
    horizontal = (root[:, None] * vt[:k]).reshape(k, n, kw).transpose(1, 0, 2)[:, :, None, :]
    approx = ((u[:, :k] * s[:k]) @ vt[:k]).reshape(c, kh, n, kw).transpose(2, 0, 1, 3)
    return k, vertical, horizontal, approx


def _separable_convs(conv: nn.Conv2d, k: int) -> tuple[nn.Conv2d, nn.Conv2d]:
    n, c, kh, kw = conv.weight.shape
    (sh, sw), (ph, pw), (dh, dw) = conv.stride, pair(conv.padding), conv.dilation
    first = conv_like(c, k, (kh, 1), conv, stride=(sh, 1), padding=(ph, 0), dilation=(dh, 1))
    second = conv_like(
        k, n, (1, kw), conv, stride=(1, sw), padding=(0, pw), dilation=(1, dw),
        bias=conv.bias is not None,
    )  # fmt: skip
    return first, second


@dataclass(frozen=True)
class Separable(Factorization):
    """A k x k conv as k x 1 (C -> K) then 1 x k (K -> N): Jaderberg's scheme 2, Tai's optimum."""

    method: ClassVar[str] = "separable"

    def _eligible(self, module: nn.Module) -> str | None:
        kh, kw = module.kernel_size  # type: ignore[union-attr]
        return "1x1 kernel" if kh == 1 and kw == 1 else None

    def convert(self, module: nn.Module, spec: RankSpec) -> Conversion:
        assert isinstance(module, nn.Conv2d)
        k, vertical, horizontal, approx = _separable_factors(module, spec)
        first, second = _separable_convs(module, k)
        first.weight = to_param(vertical, module.weight)
        second.weight = to_param(horizontal, module.weight)
        copy_bias(second, module)
        return Conversion(nn.Sequential(first, second), [k], torch.as_tensor(approx))


@dataclass(frozen=True)
class LowRankBN(Separable):
    """Tai et al. 2016: the separable pair with a BatchNorm between (identity at conversion)."""

    method: ClassVar[str] = "lowrank_bn"

    def convert(self, module: nn.Module, spec: RankSpec) -> Conversion:
        conv = super().convert(module, spec)
        first, second = conv.block
        bn = nn.BatchNorm2d(first.out_channels).to(module.weight.dtype)
        with torch.no_grad():  # identity in eval mode: (x - 0) / sqrt((1 - eps) + eps)
            bn.running_var.fill_(1.0 - bn.eps)
        conv.block = nn.Sequential(first, bn, second)
        return conv


@dataclass(frozen=True)
class Tucker(Factorization):
    """Tucker-2 on the channel modes: 1x1 (C -> R_in), k x k core (R_in -> R_out), 1x1 (-> N).

    Attributes:
        n_iter_max: HOOI iterations of TensorLy's ``partial_tucker``.
        svd: TensorLy's SVD routine: ``"truncated_svd"`` (exact) or ``"randomized_svd"``
            (several times faster on wide layers, approximate).
    """

    n_iter_max: int = 100
    svd: str = "truncated_svd"
    method: ClassVar[str] = "tucker"

    def validate(self) -> None:
        super().validate()
        check(self.n_iter_max >= 1, "Tucker: n_iter_max must be >= 1")
        check(
            self.svd in ("truncated_svd", "randomized_svd"),
            "Tucker: svd must be 'truncated_svd' or 'randomized_svd'",
        )

    def convert(self, module: nn.Module, spec: RankSpec) -> Conversion:
        assert isinstance(module, nn.Conv2d)
        from tensorly.decomposition import partial_tucker

        w = weight_array(module)
        n, c, kh, kw = w.shape
        s2 = math.prod(module.stride)
        r_out, r_in = select(
            spec,
            [unfold(w, 0), unfold(w, 1)],
            [n, c],
            lambda r: c * r[1] + r[1] * r[0] * kh * kw + r[0] * n,
            n * c * kh * kw,
            lambda r: c * r[1] * s2 + r[1] * r[0] * kh * kw + r[0] * n,
            n * c * kh * kw,
        )
        if r_out == n and r_in == c:  # full rank: exact, no iterations needed
            core, (u_out, u_in) = w, (np.eye(n), np.eye(c))
        else:
            with warnings.catch_warnings():  # TensorLy warns when a rank exceeds a mode's size
                warnings.simplefilter("ignore", UserWarning)
                result = partial_tucker(
                    w, rank=[r_out, r_in], modes=[0, 1], n_iter_max=self.n_iter_max,
                    init="svd", svd=self.svd, random_state=0,
                )  # fmt: skip
            core, (u_out, u_in) = result[0] if isinstance(result[0], tuple) else result
        core, u_out, u_in = np.asarray(core), np.asarray(u_out), np.asarray(u_in)
        (sh, sw), (ph, pw), (dh, dw) = module.stride, pair(module.padding), module.dilation
        first = conv_like(c, r_in, (1, 1), module)
        middle = conv_like(
            r_in, r_out, (kh, kw), module, stride=(sh, sw), padding=(ph, pw), dilation=(dh, dw)
        )
        last = conv_like(r_out, n, (1, 1), module, bias=module.bias is not None)
        first.weight = to_param(u_in.T[:, :, None, None], module.weight)
        middle.weight = to_param(core, module.weight)
        last.weight = to_param(u_out[:, :, None, None], module.weight)
        copy_bias(last, module)
        approx = np.einsum("abyx,na,cb->ncyx", core, u_out, u_in, optimize=True)
        block = nn.Sequential(first, middle, last)
        return Conversion(block, [r_out, r_in], torch.as_tensor(approx))


@dataclass(frozen=True)
class CP(Factorization):
    """CP decomposition into 1x1 (C -> R), kx1 and 1xk depthwise (R), 1x1 (R -> N).

    Attributes:
        n_iter_max: ALS iterations.
        seed: random state for the initial columns beyond a mode's size.
        backend: ``"torch"`` (squeezer's ALS with contraction-based MTTKRP, fast on large
            kernels) or ``"tensorly"`` (TensorLy's ``parafac``, which forms Khatri-Rao
            products explicitly and needs minutes and gigabytes on 512-channel layers).
    """

    n_iter_max: int = 200
    seed: int = 0
    backend: str = "torch"
    method: ClassVar[str] = "cp"

    def validate(self) -> None:
        super().validate()
        check(self.n_iter_max >= 1, "CP: n_iter_max must be >= 1")
        check(self.backend in ("torch", "tensorly"), "CP: backend must be 'torch' or 'tensorly'")

    def convert(self, module: nn.Module, spec: RankSpec) -> Conversion:
        assert isinstance(module, nn.Conv2d)
        from tensorly.decomposition import parafac

        w = weight_array(module)
        n, c, kh, kw = w.shape
        sh, sw = module.stride
        bound = math.prod(w.shape) // max(w.shape)
        if spec.kind == "vbmf":  # as in Kim et al.'s code: the larger of the two VBMF ranks
            from squeezer.factorization.rank import vbmf_rank

            ranks = [min(bound, max(vbmf_rank(unfold(w, 0)), vbmf_rank(unfold(w, 1))))]
        else:
            ranks = select(
                spec,
                [unfold(w, 0)],
                [bound],
                lambda r: r[0] * (c + kh + kw + n),
                n * c * kh * kw,
                lambda r: r[0] * (c * sh * sw + kh * sw + kw + n),
                n * c * kh * kw,
            )
        (r,) = ranks
        if self.backend == "tensorly":
            with warnings.catch_warnings():  # TensorLy warns when r exceeds a mode's size
                warnings.simplefilter("ignore", UserWarning)
                weights, (a_n, a_c, a_y, a_x) = parafac(
                    w, rank=r, n_iter_max=self.n_iter_max, init="svd", random_state=self.seed,
                    tol=1e-10,
                )  # fmt: skip
        else:
            weights, (a_n, a_c, a_y, a_x) = cp_als(w, r, self.n_iter_max, seed=self.seed)
        a_n = np.asarray(a_n) * np.asarray(weights)[None, :]
        (ph, pw), (dh, dw) = pair(module.padding), module.dilation
        first = conv_like(c, r, (1, 1), module)
        vertical = conv_like(
            r, r, (kh, 1), module, stride=(sh, 1), padding=(ph, 0), dilation=(dh, 1), groups=r
        )
        horizontal = conv_like(
            r, r, (1, kw), module, stride=(1, sw), padding=(0, pw), dilation=(1, dw), groups=r
        )
        last = conv_like(r, n, (1, 1), module, bias=module.bias is not None)
        first.weight = to_param(np.asarray(a_c).T[:, :, None, None], module.weight)
        vertical.weight = to_param(np.asarray(a_y).T[:, None, :, None], module.weight)
        horizontal.weight = to_param(np.asarray(a_x).T[:, None, None, :], module.weight)
        last.weight = to_param(a_n[:, :, None, None], module.weight)
        copy_bias(last, module)
        approx = np.einsum("nr,cr,yr,xr->ncyx", a_n, a_c, a_y, a_x, optimize=True)
        block = nn.Sequential(first, vertical, horizontal, last)
        return Conversion(block, [r], torch.as_tensor(approx))


@dataclass(frozen=True)
class TensorTrain(Factorization):
    """A Linear as a Tensor-Train layer; ``rank`` bounds every TT rank.

    Attributes:
        d: number of cores (the layer's sizes are split into d balanced factors).
    """

    d: int = 3
    handles: ClassVar = (nn.Linear,)
    method: ClassVar[str] = "tt"

    def validate(self) -> None:
        super().validate()
        check(self.d >= 2, "TensorTrain: d must be >= 2")

    def convert(self, module: nn.Module, spec: RankSpec) -> Conversion:
        assert isinstance(module, nn.Linear)
        in_modes = tt_modes(module.in_features, self.d)
        out_modes = tt_modes(module.out_features, self.d)
        w = weight_array(module)
        t = w.reshape(*out_modes, *in_modes)
        order = [i for k in range(self.d) for i in (self.d + k, k)]
        t = t.transpose(order).reshape([in_modes[k] * out_modes[k] for k in range(self.d)])
        cuts = [t.reshape(math.prod(t.shape[:k]), -1) for k in range(1, self.d)]
        full = [min(u.shape) for u in cuts]

        def params(r: list[int]) -> int:
            rr = [1, *r, 1]
            return sum(rr[k] * in_modes[k] * out_modes[k] * rr[k + 1] for k in range(self.d))

        ranks = select(spec, list(cuts), full, params, w.size)
        layer = TTLinear.from_linear(module, [1, *ranks, 1], in_modes, out_modes)
        return Conversion(layer, layer.ranks[1:-1], layer.full_matrix().detach())
