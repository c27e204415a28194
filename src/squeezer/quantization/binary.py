"""Binary and ternary weights and binary activations (methods S8, S9 and S10).

Quantizers that plug into the fake-quantized layers of :mod:`squeezer.quantization.fake`, and
their configs, run like the other k-bit methods::

    sq.quantize_(model, sq.quantization.XNOR(), data=train)     # binary weights and inputs
    sq.fit(model, train, epochs=5)
    sq.save(model, "net-xnor.sqz")                                # 1 bit a weight + scales

- :class:`BinaryConnect` (Courbariaux et al. 2015): weights ``+-H`` with ``H`` the layer's
  Glorot bound ``sqrt(1.5 / (fan_in + fan_out))``; the latent weight is clipped to
  ``[-H, H]`` after every update; deterministic (``sign``) or stochastic (``+H`` with
  probability ``hard_sigmoid(w / H)``) in training, deterministic at inference (the binary
  network that is stored). Activations stay float.
- :class:`BinaryNet` (Courbariaux, Hubara et al. 2016): BinaryConnect's weights and binary
  layer inputs, ``sign(x)`` with the straight-through estimator cancelled outside
  ``[-1, 1]``.
- :class:`XNOR` (Rastegari et al. 2016): weights ``alpha_c sign(w)`` with ``alpha_c`` the mean
  magnitude of output channel ``c`` (BWN when ``binary_inputs=False``); with binary inputs
  the output is rescaled by the map ``K``, the mean magnitude of the input over channels
  averaged over each receptive field.
- :class:`LAB` (Hou et al. 2017): loss-aware binarization, ``alpha`` weighted by the
  diagonal curvature estimate from the gradient's second moment (Adam's ``v``).
- :class:`TWN` (Li & Liu 2016): ternary weights ``alpha * {-1, 0, 1}``, threshold
  ``0.7 mean|w|`` and ``alpha`` the mean magnitude above it, per layer.
- :class:`TTQ` (Zhu et al. 2017): ternary weights ``{-W_n, 0, W_p}`` with the two scales
  trained; threshold ``t max|w|`` (t = 0.05).
- :class:`TernaryConnect` (Lin, Courbariaux et al. 2016, "Neural Networks with Few
  Multiplications"): weights ``{-H, 0, H}`` sampled in training (``+-H`` with probability
  ``|w| / H``, else 0; ``H`` the Glorot bound, the latent clipped to ``[-H, H]``), rounded at
  inference; and quantized back-propagation: the weight gradient is computed from the layer
  input rounded to a power of two (``sign(x) 2^round(log2|x|)``, ``shift_bits`` of exponent
  below the batch's largest), so that its multiplications become shifts. The forward pass and
  the gradient passed to earlier layers use the exact input.

A binary activation of a non-negative input is constant, so with binary inputs the configs
replace the ``nn.ReLU`` modules of the model by ``nn.Hardtanh`` (BinaryNet's activation: its
gradient is the same cancellation). A ReLU applied as a function cannot be replaced; the
report warns when a binarized layer's input has no negative value during calibration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from squeezer.config import check
from squeezer.core import register_handler
from squeezer.quantization.fake import InputQuantizer, WeightQuantizer, _channel_view, _GradScale
from squeezer.quantization.qat import KBit, prepare_kbit_


class _SignSTE(torch.autograd.Function):
    """``sign`` with ``sign(0) = +1``; the gradient passed through where ``|x| <= 1`` and
    cancelled elsewhere (BinaryNet's estimator)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        return grad * (x.abs() <= 1).to(grad.dtype)


def sign_ste(x: Tensor) -> Tensor:
    return _SignSTE.apply(x)


class _StraightThrough(torch.autograd.Function):
    """Forward: ``value`` exactly; backward: the gradient handed to the latent weight as is."""

    @staticmethod
    def forward(ctx: Any, latent: Tensor, value: Tensor) -> Tensor:
        return value

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return grad, None


def straight_through(latent: Tensor, value: Tensor) -> Tensor:
    return _StraightThrough.apply(latent, value.detach())


def _sign(x: Tensor) -> Tensor:
    return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)


def glorot_bound(w: Tensor) -> float:
    """BinaryConnect's ``H``: ``sqrt(1.5 / (fan_in + fan_out))`` of the layer's shape."""
    receptive = w[0, 0].numel() if w.dim() > 2 else 1
    fan_in, fan_out = w.shape[1] * receptive, w.shape[0] * receptive
    return math.sqrt(1.5 / (fan_in + fan_out))


class BinaryConnectWeight(WeightQuantizer):
    """``+-H``; the latent weight clipped to ``[-H, H]`` in training (see the module
    documentation). Stored as 1-bit codes: ``(q - 1/2) * 2H``."""

    def __init__(self, stochastic: bool = False) -> None:
        super().__init__()
        self.bits, self.lo, self.hi = 1, 0, 1
        self.stochastic = stochastic

    def forward(self, w: Tensor) -> Tensor:
        h = glorot_bound(w)
        if self.training and isinstance(w, nn.Parameter):
            with torch.no_grad():
                w.clamp_(-h, h)
        if self.training and self.stochastic:
            p = torch.clamp((w.detach() / h + 1) / 2, 0, 1)
            b = torch.where(torch.rand_like(p) < p, 1.0, -1.0)
        else:
            b = _sign(w.detach())
        return straight_through(w, b * h)

    def integer(self, weight: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        h = glorot_bound(weight)
        q = (weight.detach() >= 0).long()
        return q, torch.full((1,), 2 * h), torch.full((1,), 0.5)

    def extra_repr(self) -> str:
        return f"bits=1, stochastic={self.stochastic}"


class XNORWeight(WeightQuantizer):
    """``alpha_c sign(w)``, ``alpha_c = mean|w_c|`` per output channel (BWN, XNOR-Net). The
    gradient follows XNOR-Net: through ``alpha`` (``1/n``) and through ``sign`` where
    ``|w| <= 1``. Stored as 1-bit codes with one scale ``2 alpha_c`` per channel."""

    def __init__(self) -> None:
        super().__init__()
        self.bits, self.lo, self.hi = 1, 0, 1

    def forward(self, w: Tensor) -> Tensor:
        alpha = _channel_view(w.abs().flatten(1).mean(1), w.dim())
        return sign_ste(w) * alpha

    def integer(self, weight: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        alpha = weight.detach().abs().flatten(1).mean(1).clamp(min=1e-12)
        q = (weight.detach() >= 0).long()
        return q, 2 * alpha, torch.full_like(alpha, 0.5)


class TWNWeight(WeightQuantizer):
    """Ternary weight networks: ``alpha * sign(w) * [|w| > delta]`` with ``delta = 0.7
    mean|w|`` and ``alpha`` the mean of ``|w|`` above ``delta`` (Li & Liu 2016, eq. 9 and
    11), per layer; straight-through gradient. Stored as 2-bit codes ``{-1, 0, 1} * alpha``."""

    def __init__(self, threshold: float = 0.7) -> None:
        super().__init__()
        self.bits, self.lo, self.hi = 2, -2, 1
        self.threshold = threshold

    def _codes(self, w: Tensor) -> tuple[Tensor, Tensor]:
        a = w.detach().abs()
        keep = a > self.threshold * a.mean()
        alpha = a[keep].mean() if bool(keep.any()) else a.new_tensor(1.0)
        return _sign(w.detach()) * keep, alpha.reshape(1).clamp(min=1e-12)

    def forward(self, w: Tensor) -> Tensor:
        t, alpha = self._codes(w)
        return straight_through(w, t * alpha)

    def integer(self, weight: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        t, alpha = self._codes(weight)
        return t.long(), alpha, torch.zeros(1)

    def extra_repr(self) -> str:
        return f"bits=2 (ternary), threshold={self.threshold} mean|w|"


class TTQWeight(WeightQuantizer):
    """Trained ternary quantization: ``W_p`` above ``delta = t max|w|``, ``-W_n`` below
    ``-delta``, 0 between (Zhu et al. 2017). ``W_p`` and ``W_n`` are parameters; their
    gradients are the paper's sums of the gradients over their sets divided by the sets'
    sizes (with the plain sums, SGD at lr 0.01 diverged on LeNet-5, whose fc1 has 400,000
    weights: one learning rate cannot suit both). The latent weight's gradient is scaled by
    ``W_p``, 1 and ``W_n`` on the three sets. The two scales differ, so the values are not
    an affine grid: frozen, the weight is stored as a three-value codebook (2-bit symbols)."""

    affine = False

    def __init__(self, threshold: float = 0.05) -> None:
        super().__init__()
        self.bits, self.lo, self.hi = 2, -1, 1
        self.threshold = threshold
        self.w_p = nn.Parameter(torch.ones(()))
        self.w_n = nn.Parameter(torch.ones(()))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))

    def _masks(self, w: Tensor) -> tuple[Tensor, Tensor]:
        delta = self.threshold * w.detach().abs().max()
        return (w.detach() > delta).to(w.dtype), (w.detach() < -delta).to(w.dtype)

    def init_from(self, w: Tensor) -> None:
        """Start each scale at the mean magnitude of its set (the TWN-like solution)."""
        pos, neg = self._masks(w)
        with torch.no_grad():
            a = w.detach().abs()
            self.w_p.fill_(float((a * pos).sum() / pos.sum().clamp(min=1)) or 1e-3)
            self.w_n.fill_(float((a * neg).sum() / neg.sum().clamp(min=1)) or 1e-3)
            self.initialized.fill_(True)

    def forward(self, w: Tensor) -> Tensor:
        if not bool(self.initialized):
            self.init_from(w)
        pos, neg = self._masks(w)
        w_p = _GradScale.apply(self.w_p, 1.0 / max(float(pos.sum()), 1.0))
        w_n = _GradScale.apply(self.w_n, 1.0 / max(float(neg.sum()), 1.0))
        values = w_p * pos - w_n * neg
        grad_scale = (self.w_p * pos + self.w_n * neg + (1 - pos - neg)).detach()
        return values + grad_scale * (w - w.detach())

    def integer(self, weight: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        raise TypeError("TTQ weights are a three-value codebook, not an affine grid")

    def extra_repr(self) -> str:
        return f"bits=2 (ternary), threshold={self.threshold} max|w|"


class LABWeight(WeightQuantizer):
    """Loss-aware binarization (Hou, Yao & Kwok 2017): ``alpha sign(w)`` with ``alpha =
    ||d * w||_1 / ||d||_1``, ``d`` the diagonal Hessian estimate Adam uses, ``sqrt(v_hat) +
    eps`` of the second moment ``v`` of the latent weight's gradient. That is the closed-form
    proximal Newton step of the paper (Proposition 3.1), per layer. ``v`` is kept here, from
    the gradients that reach the weight (a hook on each forward), with Adam's ``beta2``, so it
    is the same whatever optimizer trains the latent weight. Before any gradient, ``d = 1``:
    BWN's mean magnitude. Stored as 1-bit codes with the scale ``2 alpha``."""

    def __init__(self, beta2: float = 0.999, eps: float = 1e-8) -> None:
        super().__init__()
        self.bits, self.lo, self.hi = 1, 0, 1
        self.beta2, self.eps = beta2, eps
        self.register_buffer("second_moment", torch.zeros(0))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def _record(self, grad: Tensor) -> None:
        g = grad.detach()
        if self.second_moment.shape != g.shape:
            self.second_moment = torch.zeros_like(g)
        self.second_moment.mul_(self.beta2).add_(g * g, alpha=1 - self.beta2)
        self.steps += 1

    def curvature(self, w: Tensor) -> Tensor:
        """``d``: ``sqrt(v / (1 - beta2^t)) + eps``, or ones before the first gradient."""
        if int(self.steps) == 0 or self.second_moment.shape != w.shape:
            return torch.ones_like(w)
        v_hat = self.second_moment / (1 - self.beta2 ** int(self.steps))
        return v_hat.sqrt() + self.eps

    def _alpha(self, w: Tensor) -> Tensor:
        d = self.curvature(w.detach())
        return ((d * w.detach().abs()).sum() / d.sum()).reshape(1).clamp(min=1e-12)

    def forward(self, w: Tensor) -> Tensor:
        if self.training and w.requires_grad:
            w = w.view_as(w)  # a node of this forward's graph, to see its gradient
            w.register_hook(self._record)
        return straight_through(w, _sign(w.detach()) * self._alpha(w))

    def integer(self, weight: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        q = (weight.detach() >= 0).long()
        return q, 2 * self._alpha(weight), torch.full((1,), 0.5)

    def extra_repr(self) -> str:
        return f"bits=1, beta2={self.beta2}"


class BinaryInput(InputQuantizer):
    """``sign(x)`` (``sign(0) = +1``), gradient cancelled outside ``[-1, 1]``. Calibration
    only records whether the input ever goes negative (see the module documentation)."""

    def __init__(self) -> None:
        super().__init__()
        self.bits = 1
        self.register_buffer("saw_negative", torch.zeros((), dtype=torch.bool))

    def forward(self, x: Tensor) -> Tensor:
        if self.calibrating:
            self.saw_negative |= bool((x < 0).any())
        return sign_ste(x)


class TernaryConnectWeight(WeightQuantizer):
    """Ternary connect: ``{-H, 0, H}``, stochastic in training (``P(+-H) = |w| / H``),
    ``round(w / H) H`` at inference. Stored as 2-bit codes ``{-1, 0, 1} * H``."""

    def __init__(self, stochastic: bool = True) -> None:
        super().__init__()
        self.bits, self.lo, self.hi = 2, -2, 1
        self.stochastic = stochastic

    def _codes(self, w: Tensor) -> tuple[Tensor, float]:
        h = glorot_bound(w)
        a = (w.detach().abs() / h).clamp(max=1)
        keep = torch.rand_like(a) < a if self.training and self.stochastic else a > 0.5
        return _sign(w.detach()) * keep, h

    def forward(self, w: Tensor) -> Tensor:
        h = glorot_bound(w)
        if self.training and isinstance(w, nn.Parameter):
            with torch.no_grad():
                w.clamp_(-h, h)
        t, h = self._codes(w)
        return straight_through(w, t * h)

    def integer(self, weight: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        t, h = self._codes(weight)
        return t.long(), torch.full((1,), h), torch.zeros(1)

    def extra_repr(self) -> str:
        return f"bits=2 (ternary), stochastic={self.stochastic}"


def power_of_two(x: Tensor, exponent_bits: int) -> Tensor:
    """``sign(x) 2^round(log2|x|)`` with exponents from the tensor's largest down
    ``2^exponent_bits - 1`` steps; smaller magnitudes become 0 (Lin 2016's quantized input)."""
    a = x.abs()
    top = float(a.max()) if a.numel() else 0.0
    if top == 0.0:
        return torch.zeros_like(x)
    e = torch.round(torch.log2(a.clamp(min=1e-38)))
    emax = round(math.log2(top))
    low = emax - (2**exponent_bits - 1)
    q = torch.sign(x) * torch.exp2(e.clamp(low, emax))
    return torch.where(e < low - 0.5, torch.zeros_like(x), q)


class _ShiftBackward(torch.autograd.Function):
    """A linear or convolution layer whose weight gradient uses the power-of-two input
    (quantized back-propagation); the input gradient is the exact one."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, w: Tensor, layer: nn.Module, exponent_bits: int) -> Tensor:
        ctx.layer = layer
        ctx.save_for_backward(power_of_two(x.detach(), exponent_bits), w)
        ctx.input_shape = x.shape
        if isinstance(layer, nn.Linear):
            return F.linear(x, w)
        return layer._conv_forward(x, w, None)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        xq, w = ctx.saved_tensors
        layer = ctx.layer
        if isinstance(layer, nn.Linear):
            gx = grad @ w
            gw = grad.reshape(-1, grad.shape[-1]).t() @ xq.reshape(-1, xq.shape[-1])
            return gx, gw, None, None
        args = (layer.stride, layer.padding, layer.dilation, layer.groups)
        fn = torch.nn.grad.conv2d_input if grad.dim() == 4 else torch.nn.grad.conv1d_input
        gfn = torch.nn.grad.conv2d_weight if grad.dim() == 4 else torch.nn.grad.conv1d_weight
        gx = fn(ctx.input_shape, w, grad, *args)
        gw = gfn(xq, w.shape, grad, *args)
        return gx, gw, None, None


def shift_backward(layer: nn.Module, x: Tensor, w: Tensor, exponent_bits: int) -> Tensor:
    """``layer``'s product of ``x`` and ``w`` (no bias) with quantized back-propagation."""
    return _ShiftBackward.apply(x, w, layer, exponent_bits)


def binary_method(method: str) -> bool:
    return method in BINARY_METHODS


def make_weight(method: str, stochastic: bool, threshold: float) -> WeightQuantizer:
    if method in ("binaryconnect", "binarynet"):
        return BinaryConnectWeight(stochastic)
    if method == "xnor":
        return XNORWeight()
    if method == "lab":
        return LABWeight()
    if method == "twn":
        return TWNWeight(threshold or 0.7)
    if method == "ttq":
        return TTQWeight(threshold or 0.05)
    if method == "ternaryconnect":
        return TernaryConnectWeight(stochastic)
    raise ValueError(f"unknown binary method {method!r}")


# ------------------------------------------------------------------------------- configs


@dataclass(frozen=True)
class _LowBit(KBit):
    """Binary and ternary methods: ``bits`` is fixed by the method (1 binary, 2 ternary).
    Layers given other bits (``first_last_bits``, ``per_layer``) get uniform ``QAT`` at those
    bits."""

    bits: int = 1
    quantize_inputs: bool = False
    min_bits: ClassVar[int] = 1
    native_bits: ClassVar[int] = 1
    binary_inputs: ClassVar[bool] = False

    def validate(self) -> None:
        super().validate()
        name = type(self).__name__
        check(
            self.bits == self.native_bits,
            f"{name}: bits is {self.native_bits} for this method (other layers: per_layer or "
            "first_last_bits)",
        )

    def bits_for(self, name: str, end: bool) -> tuple[int, int]:
        wb, ib = super().bits_for(name, end)
        if wb != self.native_bits:
            return wb, ib
        return wb, 1 if self.binary_inputs else (self.input_bits or 8)

    def args_for(self, weight_bits: int) -> dict[str, Any]:
        if weight_bits != self.native_bits:
            return {"method": "qat", "per_channel": True}
        return self.layer_args()


@dataclass(frozen=True)
class BinaryConnect(_LowBit):
    """BinaryConnect: binary weights ``+-H``, float activations; ``stochastic`` binarization
    in training (deterministic at inference)."""

    stochastic: bool = False
    method: ClassVar[str] = "binaryconnect"

    def layer_args(self) -> dict[str, Any]:
        return {"method": self.method, "per_channel": False, "stochastic": self.stochastic}


@dataclass(frozen=True)
class BinaryNet(BinaryConnect):
    """BinaryNet: BinaryConnect's weights and binary layer inputs (``sign``, straight-through
    estimator cancelled outside [-1, 1]); the model's ReLU modules become Hardtanh."""

    quantize_inputs: bool = True
    replace_relu: bool = True
    method: ClassVar[str] = "binarynet"
    binary_inputs: ClassVar[bool] = True


@dataclass(frozen=True)
class XNOR(_LowBit):
    """XNOR-Net: weights ``alpha_c sign(w)`` per output channel and, with ``binary_inputs``
    (default), binary inputs with the ``K`` scaling map; ``binary_inputs=False`` is BWN."""

    quantize_inputs: bool = True
    replace_relu: bool = True
    method: ClassVar[str] = "xnor"
    binary_inputs: ClassVar[bool] = True

    def layer_args(self) -> dict[str, Any]:
        return {"method": "xnor", "per_channel": True}


@dataclass(frozen=True)
class LAB(_LowBit):
    """Loss-aware binarization: binary weights ``alpha sign(w)`` with the curvature-weighted
    ``alpha`` of the proximal Newton step (see :class:`LABWeight`); float activations. Train
    with Adam, as the paper does (``sq.fit(..., optimizer="adam")``)."""

    method: ClassVar[str] = "lab"

    def layer_args(self) -> dict[str, Any]:
        return {"method": "lab", "per_channel": False}


@dataclass(frozen=True)
class TWN(_LowBit):
    """Ternary weight networks: ``alpha {-1, 0, 1}``, threshold ``threshold * mean|w|``."""

    bits: int = 2
    threshold: float = 0.7
    method: ClassVar[str] = "twn"
    native_bits: ClassVar[int] = 2

    def validate(self) -> None:
        super().validate()
        check(0 < self.threshold < 10, "TWN: threshold must be in (0, 10) (times mean|w|)")

    def layer_args(self) -> dict[str, Any]:
        return {"method": "twn", "per_channel": False, "threshold": self.threshold}


@dataclass(frozen=True)
class TTQ(_LowBit):
    """Trained ternary quantization: ``{-W_n, 0, W_p}`` with trained scales, threshold
    ``threshold * max|w|``."""

    bits: int = 2
    threshold: float = 0.05
    method: ClassVar[str] = "ttq"
    native_bits: ClassVar[int] = 2

    def validate(self) -> None:
        super().validate()
        check(0 < self.threshold < 1, "TTQ: threshold must be in (0, 1) (times max|w|)")

    def layer_args(self) -> dict[str, Any]:
        return {"method": "ttq", "per_channel": False, "threshold": self.threshold}


@dataclass(frozen=True)
class TernaryConnect(_LowBit):
    """Ternary connect with quantized back-propagation (Lin 2016): weights ``{-H, 0, H}``
    (stochastic in training unless ``stochastic=False``) and weight gradients computed from
    layer inputs rounded to powers of two with ``shift_bits`` bits of exponent (0: exact
    inputs in the backward pass)."""

    bits: int = 2
    stochastic: bool = True
    shift_bits: int = 3
    method: ClassVar[str] = "ternaryconnect"
    native_bits: ClassVar[int] = 2

    def validate(self) -> None:
        super().validate()
        check(0 <= self.shift_bits <= 6, "TernaryConnect: shift_bits must be in [0, 6]")

    def layer_args(self) -> dict[str, Any]:
        return {
            "method": "ternaryconnect",
            "per_channel": False,
            "stochastic": self.stochastic,
            "threshold": float(self.shift_bits),
        }


BINARY_METHODS = ("binaryconnect", "binarynet", "xnor", "lab", "twn", "ttq", "ternaryconnect")
CONFIGS = {c.method: c for c in (BinaryConnect, BinaryNet, XNOR, LAB, TWN, TTQ, TernaryConnect)}
for _config in CONFIGS.values():
    register_handler("quantize", _config)(prepare_kbit_)
