"""Fake quantization for training and for k-bit storage: quantizers and quantized layers.

A quantized layer (:class:`QuantConv2d`, :class:`QuantConv1d`, :class:`QuantLinear`) is the
float layer it replaces plus two small modules: ``weight_quantizer`` maps the trained
(latent, float) weight to the values the layer computes with, and ``input_quantizer`` rounds
the layer's input (the previous layer's activations). Both round with a straight-through
estimator (the gradient of ``round`` taken as 1), so the layer trains through ``sq.fit``.

Every weight quantizer computes, exactly in float32, ``(q - zero_point) * scale`` from an
integer code ``q`` in ``[lo, hi]``: :meth:`WeightQuantizer.integer` returns ``q``, the scale
and the zero point, and :func:`freeze_` stores the weight as those values, so a ``.sqz`` file
can keep the k-bit codes and reproduce the float weight bit for bit.

The methods (configs in :mod:`squeezer.quantization.qat`):

- ``qat``: uniform quantization as integer kernels run it (weights symmetric per output
  channel, scale from the largest magnitude; activations affine per tensor, range from
  calibration, then a moving average of the batch min/max in training);
- ``lsq``: learned step size (Esser et al. 2020): the step is a parameter, its gradient
  scaled by ``1 / sqrt(N * Qp)``; weights per tensor, activations unsigned after a ReLU;
- ``dorefa``: DoReFa-Net (Zhou et al. 2016): ``tanh`` weights normalized to [0, 1],
  quantized, mapped to [-1, 1]; activations clipped to [0, 1] and quantized;
- ``fixed``: fixed point ``<IL, FL>`` (Gupta et al. 2015): weights *stored* on the grid
  ``2^-FL`` (every update rounded back, to nearest or stochastically), activations rounded
  on the same kind of grid.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from squeezer.core.spec import register_layer

METHODS = ("qat", "lsq", "dorefa", "fixed", "binaryconnect", "binarynet", "xnor", "twn", "ttq")
ROUNDINGS = ("nearest", "stochastic")
MSE_SAMPLE = 1 << 18  # activation values kept for the calibration range search


class _RoundSTE(torch.autograd.Function):
    """``round`` forward (exactly), identity backward."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        return torch.round(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        return grad


class _StochasticRoundSTE(torch.autograd.Function):
    """``floor(x + u)``, u ~ U[0, 1): rounds up with probability frac(x); identity backward."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        return torch.floor(x + torch.rand_like(x))

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        return grad


class _GradScale(torch.autograd.Function):
    """Identity forward; the gradient multiplied by ``scale`` (LSQ's step-size gradient)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, scale: float) -> Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return grad * ctx.scale, None


class _StepSTE(torch.autograd.Function):
    """``[x >= 1/2]`` forward, identity backward (a 1-bit round)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        return (x >= 0.5).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        return grad


def round_ste(x: Tensor) -> Tensor:
    return _RoundSTE.apply(x)


def stochastic_round_ste(x: Tensor) -> Tensor:
    return _StochasticRoundSTE.apply(x)


def signed_range(bits: int) -> tuple[int, int]:
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def _channel_view(t: Tensor, dim: int) -> Tensor:
    """A per-channel vector shaped to broadcast against a ``dim``-dimensional weight."""
    return t.reshape(-1, *([1] * (dim - 1)))


# --------------------------------------------------------------------------- weights


class WeightQuantizer(nn.Module):
    """Maps the latent weight to the weight the layer uses: ``(q - zero_point) * scale``."""

    bits: int
    lo: int
    hi: int

    def integer(self, weight: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(q, scale, zero_point)`` with ``forward(weight) == (q - zero_point) * scale``.

        ``q`` is an int64 tensor shaped like the weight; ``scale`` and ``zero_point`` are
        float32 vectors, one value per output channel or a single one.
        """
        raise NotImplementedError  # every subclass defines it

    def extra_repr(self) -> str:
        return f"bits={self.bits}"


class QATWeight(WeightQuantizer):
    """Symmetric uniform weights, one scale per output channel (or per tensor):
    ``scale = max|w| / ((hi - lo) / 2)``, as PyTorch's x86 int8 weight observer computes it."""

    def __init__(self, bits: int, per_channel: bool = True) -> None:
        super().__init__()
        self.bits, self.per_channel = bits, per_channel
        self.lo, self.hi = signed_range(bits)

    def _scale(self, w: Tensor) -> Tensor:
        with torch.no_grad():
            if self.per_channel:
                amax = w.detach().abs().flatten(1).amax(1)
            else:
                amax = w.detach().abs().max().reshape(1)
            return (amax / ((self.hi - self.lo) / 2)).clamp(min=1e-12)

    def forward(self, w: Tensor) -> Tensor:
        s = _channel_view(self._scale(w), w.dim())
        return torch.clamp(round_ste(w / s), self.lo, self.hi) * s

    def integer(self, weight: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        s = self._scale(weight)
        q = torch.clamp(torch.round(weight / _channel_view(s, weight.dim())), self.lo, self.hi)
        return q.long(), s, torch.zeros_like(s)


class LSQWeight(WeightQuantizer):
    """Learned step size: ``round(clamp(w / s, -Qn, Qp)) * s`` with ``s`` a parameter whose
    gradient is scaled by ``1 / sqrt(numel * Qp)`` (Esser et al. 2020, section 2.2).
    Initialized to ``2 mean|w| / sqrt(Qp)``."""

    def __init__(self, bits: int, per_channel: bool = False, channels: int = 1) -> None:
        super().__init__()
        self.bits, self.per_channel = bits, per_channel
        self.lo, self.hi = signed_range(bits)
        self.step = nn.Parameter(torch.ones(channels if per_channel else 1))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))

    def init_from(self, w: Tensor) -> None:
        with torch.no_grad():
            flat = (
                w.detach().abs().flatten(1) if self.per_channel else w.detach().abs().reshape(1, -1)
            )
            self.step.copy_((2 * flat.mean(1) / math.sqrt(self.hi)).clamp(min=1e-8))
            self.initialized.fill_(True)

    def forward(self, w: Tensor) -> Tensor:
        if not bool(self.initialized):
            self.init_from(w)
        per = w[0].numel() if self.per_channel else w.numel()
        s = _channel_view(_GradScale.apply(self.step, 1.0 / math.sqrt(per * self.hi)), w.dim())
        return round_ste(torch.clamp(w / s, self.lo, self.hi)) * s

    def integer(self, weight: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        if not bool(self.initialized):
            self.init_from(weight)
        s = self.step.detach().clone()
        q = torch.round(torch.clamp(weight / _channel_view(s, weight.dim()), self.lo, self.hi))
        return q.long(), s, torch.zeros_like(s)


class DoReFaWeight(WeightQuantizer):
    """DoReFa-Net weights (Zhou et al. 2016, eq. 9): ``2 quantize_k(tanh(w) / (2 max|tanh w|)
    + 1/2) - 1``, computed as ``(q - n/2) * (2/n)`` with ``n = 2^k - 1``. One bit: ``sign(w)
    * mean|w|``."""

    def __init__(self, bits: int) -> None:
        super().__init__()
        self.bits, self.lo, self.hi = bits, 0, 2**bits - 1

    def _codes(self, w: Tensor, rnd: Any) -> tuple[Tensor, Tensor, Tensor]:
        n = self.hi
        if self.bits == 1:  # sign(w) * E|w| = (q - 1/2) * 2 E|w|, q = [w >= 0]
            scale = (2 * w.detach().abs().mean()).clamp(min=1e-12).reshape(1)
            return _StepSTE.apply(w / scale + 0.5), scale, torch.full_like(scale, 0.5)
        t = torch.tanh(w)
        u = t / (2 * t.detach().abs().max().clamp(min=1e-12)) + 0.5
        return rnd(u * n), torch.full((1,), 2.0 / n), torch.full((1,), n / 2)

    def forward(self, w: Tensor) -> Tensor:
        q, s, zp = self._codes(w, round_ste)
        return (q - zp) * s

    def integer(self, weight: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        with torch.no_grad():
            q, s, zp = self._codes(weight, torch.round)
        return q.long(), s.float(), zp.float()


class FixedPointWeight(WeightQuantizer):
    """Weights stored in fixed point ``<IL, FL>`` (Gupta et al. 2015): in training, the
    latent weight itself is rounded to the grid ``2^-FL`` before each forward (so every update
    is rounded, to nearest or stochastically, as in the paper), then used as it is."""

    def __init__(self, bits: int, fraction_bits: int, rounding: str = "stochastic") -> None:
        super().__init__()
        self.bits, self.fraction_bits, self.rounding = bits, fraction_bits, rounding
        self.lo, self.hi = signed_range(bits)

    def _round(self, w: Tensor, stochastic: bool) -> Tensor:
        scaled = w * 2.0**self.fraction_bits
        q = torch.floor(scaled + torch.rand_like(scaled)) if stochastic else torch.round(scaled)
        return torch.clamp(q, self.lo, self.hi)

    def forward(self, w: Tensor) -> Tensor:
        if self.training and isinstance(w, nn.Parameter):
            with torch.no_grad():
                w.copy_(self._round(w, self.rounding == "stochastic") * 2.0**-self.fraction_bits)
            return w
        q = self._round(w.detach(), False)
        return w + (q * 2.0**-self.fraction_bits - w).detach()

    def integer(self, weight: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        q = self._round(weight.detach(), False)
        return q.long(), torch.full((1,), 2.0**-self.fraction_bits), torch.zeros(1)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, fraction_bits={self.fraction_bits}, rounding={self.rounding}"


class FrozenWeight(WeightQuantizer):
    """A weight already stored as its quantized values (after :func:`freeze_`): the forward
    is the identity; ``scale`` and ``zero_point`` say which k-bit codes the values are."""

    def __init__(self, bits: int, lo: int, channels: int) -> None:
        super().__init__()
        self.bits, self.lo, self.hi = bits, lo, lo + 2**bits - 1
        self.register_buffer("scale", torch.ones(channels))
        self.register_buffer("zero_point", torch.zeros(channels))

    def forward(self, w: Tensor) -> Tensor:
        return w

    def integer(self, weight: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        s = _channel_view(self.scale, weight.dim())
        zp = _channel_view(self.zero_point, weight.dim())
        q = torch.round(weight.detach() / s + zp)
        return q.long(), self.scale.clone(), self.zero_point.clone()


# --------------------------------------------------------------------------- activations


class InputQuantizer(nn.Module):
    """Rounds a layer's input. ``calibrating`` (set by :func:`calibrate`) collects ranges."""

    bits: int

    def __init__(self) -> None:
        super().__init__()
        self.calibrating = False

    def finish_calibration(self) -> None:
        """Fix the range from what calibration collected."""

    def extra_repr(self) -> str:
        return f"bits={self.bits}"


class QATInput(InputQuantizer):
    """Affine per-tensor activations in ``[0, 2^b - 1]`` over the range ``[min, max]``.

    Calibration picks the clipping range that minimizes the squared rounding-plus-clipping
    error on a sample of the calibration activations (an MSE observer), and training keeps
    that range. Without calibration the range starts at the first batch's min and max and
    follows a moving average (0.01) of each batch's, as PyTorch's QAT observers do; on
    ResNet-20 at 2 bits that drifted to the batch maxima and cost 41 points (43.6% against
    84.6% with the calibrated range kept).
    """

    def __init__(self, bits: int) -> None:
        super().__init__()
        self.bits, self.lo, self.hi = bits, 0, 2**bits - 1
        self.register_buffer("min_val", torch.zeros(()))
        self.register_buffer("max_val", torch.zeros(()))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))
        self.register_buffer("calibrated", torch.zeros((), dtype=torch.bool))
        self._sample: list[Tensor] = []

    def scale_zero_point(self) -> tuple[Tensor, Tensor]:
        lo = torch.clamp(self.min_val, max=0.0)
        hi = torch.clamp(self.max_val, min=0.0)
        scale = ((hi - lo) / (self.hi - self.lo)).clamp(min=1e-8)
        zp = torch.clamp(torch.round(self.lo - lo / scale), self.lo, self.hi)
        return scale, zp

    def _observe(self, x: Tensor) -> None:
        with torch.no_grad():
            mn, mx = x.detach().min(), x.detach().max()
            if not bool(self.initialized):
                self.min_val.copy_(mn)
                self.max_val.copy_(mx)
                self.initialized.fill_(True)
            elif self.calibrating:
                self.min_val.copy_(torch.minimum(self.min_val, mn))
                self.max_val.copy_(torch.maximum(self.max_val, mx))
            elif bool(self.calibrated):
                return  # the calibrated range is kept through training
            else:
                self.min_val.lerp_(mn, 0.01)
                self.max_val.lerp_(mx, 0.01)
            if self.calibrating:
                flat = x.detach().flatten()
                step = max(1, flat.numel() // (MSE_SAMPLE // 16))
                self._sample.append(flat[::step].clone())

    def finish_calibration(self) -> None:
        if not self._sample:
            return
        values = torch.cat(self._sample)[:MSE_SAMPLE]
        self._sample = []
        lo, hi = float(self.min_val.clamp(max=0)), float(self.max_val.clamp(min=0))
        best, best_err = (lo, hi), math.inf
        for frac in torch.linspace(0.3, 1.0, 36).tolist():
            a, b = lo * frac, hi * frac
            scale = max((b - a) / (self.hi - self.lo), 1e-8)
            zp = min(max(round(self.lo - a / scale), self.lo), self.hi)
            q = torch.clamp(torch.round(values / scale) + zp, self.lo, self.hi)
            err = float(((q - zp) * scale - values).pow(2).mean())
            if err < best_err:
                best, best_err = (a, b), err
        self.min_val.fill_(best[0])
        self.max_val.fill_(best[1])
        self.calibrated.fill_(True)

    def forward(self, x: Tensor) -> Tensor:
        if self.training or self.calibrating or not bool(self.initialized):
            self._observe(x)
        scale, zp = self.scale_zero_point()
        # Straight through inside the range, zero gradient where the input is clipped.
        q = torch.clamp(round_ste(x / scale) + zp, self.lo, self.hi)
        return (q - zp) * scale


class LSQInput(InputQuantizer):
    """LSQ activations: a learned step; unsigned ``[0, 2^b - 1]`` unless the calibration (or
    first) batch has negative values, then signed. Step initialized to ``2 mean|x| /
    sqrt(Qp)`` on that batch."""

    def __init__(self, bits: int) -> None:
        super().__init__()
        self.bits = bits
        self.step = nn.Parameter(torch.ones(()))
        self.register_buffer("signed", torch.zeros((), dtype=torch.bool))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))

    def _range(self) -> tuple[int, int]:
        return signed_range(self.bits) if bool(self.signed) else (0, 2**self.bits - 1)

    def forward(self, x: Tensor) -> Tensor:
        if not bool(self.initialized) or self.calibrating:
            with torch.no_grad():
                first = not bool(self.initialized)
                self.signed.logical_or_(x.detach().min() < 0)
                if first:
                    qp = self._range()[1]
                    self.step.fill_(max(2 * float(x.detach().abs().mean()) / math.sqrt(qp), 1e-8))
                    self.initialized.fill_(True)
        lo, hi = self._range()
        s = _GradScale.apply(self.step, 1.0 / math.sqrt(x[0].numel() * hi))
        return round_ste(torch.clamp(x / s, lo, hi)) * s


class DoReFaInput(InputQuantizer):
    """DoReFa activations: ``quantize_k(clip(x, 0, 1))``. An input that can be negative (found
    in calibration or on the first batch) is clipped to [-1, 1] with symmetric levels."""

    def __init__(self, bits: int) -> None:
        super().__init__()
        self.bits = bits
        self.register_buffer("signed", torch.zeros((), dtype=torch.bool))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))

    def forward(self, x: Tensor) -> Tensor:
        if not bool(self.initialized) or self.calibrating:
            with torch.no_grad():
                self.signed.logical_or_(x.detach().min() < 0)
                self.initialized.fill_(True)
        n = 2**self.bits - 1
        if bool(self.signed):
            q = round_ste((torch.clamp(x, -1.0, 1.0) + 1) * (n / 2))
            return (q - n / 2) * (2.0 / n)
        return round_ste(torch.clamp(x, 0.0, 1.0) * n) * (1.0 / n)


class FixedPointInput(InputQuantizer):
    """Activations rounded to fixed point ``<IL, FL>``: stochastically (or to nearest) in
    training, to nearest at inference; saturated at the format's range."""

    def __init__(self, bits: int, fraction_bits: int, rounding: str = "stochastic") -> None:
        super().__init__()
        self.bits, self.fraction_bits, self.rounding = bits, fraction_bits, rounding
        self.lo, self.hi = signed_range(bits)

    def forward(self, x: Tensor) -> Tensor:
        scaled = x * 2.0**self.fraction_bits
        if self.training and self.rounding == "stochastic":
            q = stochastic_round_ste(scaled)
        else:
            q = round_ste(scaled)
        return torch.clamp(q, self.lo, self.hi) * 2.0**-self.fraction_bits

    def extra_repr(self) -> str:
        return f"bits={self.bits}, fraction_bits={self.fraction_bits}, rounding={self.rounding}"


# --------------------------------------------------------------------------- layers


class FrozenValues(WeightQuantizer):
    """A weight already stored as its values when those are no affine grid (TTQ's
    ``{-W_n, 0, W_p}``): the forward is the identity and ``.sqz`` stores the few distinct
    values as a codebook."""

    affine = False

    def __init__(self, bits: int) -> None:
        super().__init__()
        self.bits, self.lo, self.hi = bits, 0, 2**bits - 1

    def forward(self, w: Tensor) -> Tensor:
        return w


def make_weight_quantizer(
    method: str,
    bits: int,
    channels: int,
    per_channel: bool,
    fraction_bits: int,
    rounding: str,
    stochastic: bool = False,
    threshold: float = 0.0,
) -> WeightQuantizer:
    from squeezer.quantization import binary

    if binary.binary_method(method):
        return binary.make_weight(method, stochastic, threshold)
    if method == "qat":
        return QATWeight(bits, per_channel)
    if method == "lsq":
        return LSQWeight(bits, per_channel, channels)
    if method == "dorefa":
        return DoReFaWeight(bits)
    if method == "fixed":
        return FixedPointWeight(bits, fraction_bits, rounding)
    raise ValueError(f"unknown quantization method {method!r}")


def make_input_quantizer(
    method: str, bits: int, fraction_bits: int, rounding: str
) -> InputQuantizer:
    from squeezer.quantization import binary

    if binary.binary_method(method):
        return binary.BinaryInput() if bits == 1 else QATInput(bits)
    if method == "qat":
        return QATInput(bits)
    if method == "lsq":
        return LSQInput(bits)
    if method == "dorefa":
        return DoReFaInput(bits)
    if method == "fixed":
        return FixedPointInput(bits, fraction_bits, rounding)
    raise ValueError(f"unknown quantization method {method!r}")


def xnor_k_map(x: Tensor, kernel_size: Any, stride: Any, padding: Any, dilation: Any) -> Tensor:
    """XNOR-Net's ``K`` for a convolution's input ``x``: the mean magnitude over channels,
    averaged over each receptive field (zero padding counted, as the paper's box filter)."""
    a = x.abs().mean(1, keepdim=True)
    kernel = torch.ones(1, 1, *kernel_size, dtype=x.dtype, device=x.device)
    fn = F.conv2d if x.dim() == 4 else F.conv1d
    return fn(a, kernel / kernel.numel(), None, stride, padding, dilation)


class QuantLayer:
    """What the quantized Conv and Linear layers share (a mixin over the float layer)."""

    weight: nn.Parameter
    weight_quantizer: WeightQuantizer
    input_quantizer: InputQuantizer | None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """The float layer's arguments plus the quantization ones (see ``quant_args``)."""
        quant = {k: kwargs.pop(k, v) for k, v in _QUANT_DEFAULTS.items()}
        super().__init__(*args, **kwargs)  # the float layer, next in the MRO
        self._setup(**quant)

    def _setup(
        self,
        method: str,
        weight_bits: int,
        input_bits: int | None,
        per_channel: bool,
        fraction_bits: int,
        input_fraction_bits: int,
        rounding: str,
        frozen_lo: int | None,
        stochastic: bool,
        threshold: float,
        frozen_values: bool,
    ) -> None:
        self.method, self.weight_bits, self.input_bits = method, weight_bits, input_bits
        self.per_channel, self.rounding = per_channel, rounding
        self.fraction_bits, self.input_fraction_bits = fraction_bits, input_fraction_bits
        self.frozen_lo, self.frozen_values = frozen_lo, frozen_values
        self.stochastic, self.threshold = stochastic, threshold
        channels = self.weight.shape[0]
        if frozen_values:
            self.weight_quantizer = FrozenValues(weight_bits)
        elif frozen_lo is not None:
            scales = channels if per_channel and method in ("qat", "lsq", "xnor") else 1
            self.weight_quantizer = FrozenWeight(weight_bits, frozen_lo, scales)
        else:
            self.weight_quantizer = make_weight_quantizer(
                method, weight_bits, channels, per_channel, fraction_bits, rounding,
                stochastic, threshold,
            )  # fmt: skip
        self.input_quantizer = (
            None
            if input_bits is None
            else make_input_quantizer(method, input_bits, input_fraction_bits, rounding)
        )

    def quant_args(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "weight_bits": self.weight_bits,
            "input_bits": self.input_bits,
            "per_channel": self.per_channel,
            "fraction_bits": self.fraction_bits,
            "input_fraction_bits": self.input_fraction_bits,
            "rounding": self.rounding,
            "frozen_lo": self.frozen_lo,
            "stochastic": self.stochastic,
            "threshold": self.threshold,
            "frozen_values": self.frozen_values,
        }

    def quantized_weight(self) -> Tensor:
        """The weight the layer computes with."""
        return self.weight_quantizer(self.weight)

    def quantized_input(self, x: Tensor) -> Tensor:
        return x if self.input_quantizer is None else self.input_quantizer(x)

    def shift_backward(self) -> bool:
        """Ternary connect's quantized back-propagation is on (training, ``shift_bits`` > 0,
        kept in ``threshold``)."""
        return (
            self.method == "ternaryconnect"
            and self.training  # type: ignore[attr-defined]
            and self.threshold > 0
            and torch.is_grad_enabled()
        )

    def _shift(self, x: Tensor) -> Tensor:
        from squeezer.quantization.binary import shift_backward

        x = self.quantized_input(x)
        return shift_backward(self, x, self.quantized_weight(), int(self.threshold))  # type: ignore[arg-type]

    def input_scale(self, x: Tensor) -> Tensor | None:
        """XNOR-Net's ``K``: with binary inputs, the mean magnitude of the input over its
        channels, averaged over each receptive field (None for every other method)."""
        if self.method != "xnor" or self.input_bits != 1:
            return None
        if isinstance(self, nn.Linear):
            return x.abs().mean(-1, keepdim=True)
        return xnor_k_map(x, self.kernel_size, self.stride, self.padding, self.dilation)  # type: ignore[attr-defined]


_QUANT_DEFAULTS: dict[str, Any] = {
    "method": "qat",
    "weight_bits": 8,
    "input_bits": 8,
    "per_channel": True,
    "fraction_bits": 0,
    "input_fraction_bits": 0,
    "rounding": "nearest",
    "frozen_lo": None,
    "stochastic": False,
    "threshold": 0.0,
    "frozen_values": False,
}


class _QuantConv(QuantLayer):
    """The forward and spec of the quantized convolutions (before the float class in the MRO)."""

    def forward(self, x: Tensor) -> Tensor:
        if self.shift_backward():
            out = self._shift(x)
            return out if self.bias is None else out + _channel_view(self.bias, out.dim() - 1)  # type: ignore[attr-defined]
        k = self.input_scale(x)
        if k is None:
            return self._conv_forward(self.quantized_input(x), self.quantized_weight(), self.bias)  # type: ignore[attr-defined]
        out = self._conv_forward(self.quantized_input(x), self.quantized_weight(), None)  # type: ignore[attr-defined]
        out = out * k
        return out if self.bias is None else out + _channel_view(self.bias, out.dim() - 1)  # type: ignore[attr-defined]

    def spec_args(self) -> dict[str, Any]:
        from squeezer.core.spec import _conv_args

        return {**_conv_args(self), **self.quant_args()}  # type: ignore[arg-type]


@register_layer
class QuantConv2d(_QuantConv, nn.Conv2d):
    """``nn.Conv2d`` computing with a quantized weight and a quantized input."""


@register_layer
class QuantConv1d(_QuantConv, nn.Conv1d):
    """``nn.Conv1d`` computing with a quantized weight and a quantized input."""


@register_layer
class QuantLinear(QuantLayer, nn.Linear):
    """``nn.Linear`` computing with a quantized weight and a quantized input."""

    def forward(self, x: Tensor) -> Tensor:
        if self.shift_backward():
            out = self._shift(x)
            return out if self.bias is None else out + self.bias
        k = self.input_scale(x)
        if k is None:
            return F.linear(self.quantized_input(x), self.quantized_weight(), self.bias)
        out = F.linear(self.quantized_input(x), self.quantized_weight()) * k
        return out if self.bias is None else out + self.bias

    def spec_args(self) -> dict[str, Any]:
        return {
            "in_features": self.in_features,
            "out_features": self.out_features,
            "bias": self.bias is not None,
            **self.quant_args(),
        }


QUANT_LAYERS = {nn.Conv2d: QuantConv2d, nn.Conv1d: QuantConv1d, nn.Linear: QuantLinear}
