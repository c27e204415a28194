"""Conversions of a trained network's convolutions into compact filters, fitted to the layer's
own outputs on the data it sees (then fine-tuned, or distilled from the original).

- :class:`DepthwiseSeparable`: a ``k x k`` conv into MobileNet's depthwise ``k x k`` plus
  pointwise 1x1 (:class:`~squeezer.layers.compact.DepthwiseSeparableConv2d`), with
  ``multiplier`` depthwise filters per input channel;
- :class:`CReLUPairs`: a conv into half as many filters, each giving two output channels with
  their own scale (opposite signs: CReLU's negated pair) and bias
  (:class:`~squeezer.layers.compact.PairedConv2d`).

Both fit the new weights by least squares on the layer's outputs. One pass over ``data``
collects, per selected conv, the second moment ``C = E[x x^T]`` of its input patches
(augmented with a constant 1, so biases and the inputs' mean are fitted too); the fit then
minimizes ``E ||W' x - W x||^2 = tr((W' - W) C (W' - W)^T)`` in closed form:

- separable: ``W'[o, i, :] = sum_l P[o, i m + l] D[i m + l, :]``. It starts from each input
  channel's best rank-``m`` approximation (SVD of ``W[:, i, :]``), then alternates exact
  least squares in the pointwise ``P`` (with the bias) and in the depthwise ``D``, each a
  linear solve in ``C``, so the error never rises;
- CReLU pairs: the output channels are matched in pairs ``(a, b)`` greedily by the error of
  their best shared filter, the smallest eigenvalue of ``[W_a; W_b] S [W_a; W_b]^T`` with
  ``S`` the inputs' covariance; the shared filter is the top eigenvector's combination of the
  pair, and the biases restore the outputs' means.

Without data the fit is in weight space (``C = I``). The report gives each layer's relative
output error ``sqrt(E||W'x - Wx||^2 / E||Wx||^2)`` (biases included), and ``max_error``
leaves the layers that fit worse than that as they are.

    report = sq.convert_(model, sq.compact.DepthwiseSeparable(), data=batches)
    sq.distill(model, original, train, sq.distillation.KD(), sq.TrainConfig(epochs=1))
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from squeezer.config import check
from squeezer.conversion import ConversionReport, conv_obstacle, convert_layers_, plain_conv
from squeezer.core import LayerSelection, conv_patches, register_handler
from squeezer.core.modules import current_weight
from squeezer.errors import ModelError
from squeezer.layers.compact import DepthwiseSeparableConv2d, PairedConv2d


@dataclass(frozen=True)
class _FittedConversion(LayerSelection):
    samples: int = 512
    damping: float = 1e-6
    max_error: float | None = None

    default_types: ClassVar[tuple[str, ...]] = ("Conv2d",)
    needs_data: ClassVar[bool] = True

    def validate(self) -> None:
        super().validate()
        who = type(self).__name__
        check(self.samples >= 1, f"{who}: samples must be >= 1")
        check(self.damping >= 0, f"{who}: damping must be >= 0")
        check(
            self.max_error is None or self.max_error > 0,
            f"{who}: max_error must be > 0 (or None: convert whatever the error)",
        )


@dataclass(frozen=True)
class DepthwiseSeparable(_FittedConversion):
    """Convert ``k x k`` convolutions into depthwise-separable pairs fitted by least squares
    (see the module).

    Attributes:
        multiplier: depthwise filters per input channel (1: MobileNet's; ``k^2`` represents
            any conv exactly).
        iterations: rounds of alternating least squares after the SVD start.
        samples: examples of ``data`` the fit reads.
        damping: ridge term of the solves, relative to their mean diagonal.
        max_error: leave a layer as it is when its fit's relative output error is above this
            (None: convert every eligible layer).
        layers, exclude, layer_types: which layers (default: every Conv2d).
    """

    multiplier: int = 1
    iterations: int = 10

    def validate(self) -> None:
        super().validate()
        check(self.multiplier >= 1, "DepthwiseSeparable: multiplier must be >= 1")
        check(self.iterations >= 0, "DepthwiseSeparable: iterations must be >= 0")


@dataclass(frozen=True)
class CReLUPairs(_FittedConversion):
    """Convert convolutions into half as many filters used in pairs (CReLU's negated pairs;
    see the module).

    Attributes:
        samples, damping, max_error, layers, exclude, layer_types: as
            :class:`DepthwiseSeparable`.
    """


def _examples(data: Iterable[Any], samples: int, who: str) -> Iterable[Tensor]:
    seen = 0
    for batch in data:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        if not isinstance(x, Tensor):
            raise ModelError(f"convert_: {who}: data must give tensors or (inputs, targets)")
        take = min(samples - seen, len(x))
        yield x[:take]
        seen += take
        if seen >= samples:
            return
    if seen == 0:
        raise ModelError(f"convert_: {who}: the data gave no examples")


@torch.no_grad()
def patch_moments(
    model: nn.Module, convs: dict[str, nn.Conv2d], data: Iterable[Any], samples: int, who: str
) -> dict[str, Tensor]:
    """Per conv, ``E[x x^T]`` (float64) of its input patches augmented with a trailing 1, over
    ``samples`` examples of ``data``, from one pass of ``model`` in eval mode."""
    d = {n: m.weight[0].numel() + 1 for n, m in convs.items()}
    sums = {n: torch.zeros(d[n], d[n], dtype=torch.float64) for n in convs}
    counts = dict.fromkeys(convs, 0)
    device = next(model.parameters()).device

    def hook(name: str, module: nn.Conv2d, x: Tensor) -> None:
        cols = conv_patches(module, x)[0]
        cols = torch.cat([cols, torch.ones(len(cols), 1, dtype=cols.dtype, device=cols.device)], 1)
        sums[name] += (cols.T @ cols).double().cpu()
        counts[name] += len(cols)

    hooks = [
        m.register_forward_pre_hook(lambda mod, args, n=n: hook(n, mod, args[0].float()))
        for n, m in convs.items()
    ]
    was_training = model.training
    model.eval()
    try:
        for x in _examples(data, samples, who):
            model(x.to(device))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    out = {}
    for name, s in sums.items():
        if counts[name] == 0:
            raise ModelError(f"convert_: {who}: {name} was not called by the forward pass")
        out[name] = s / counts[name]
        if not bool(torch.isfinite(out[name]).all()):
            raise ModelError(f"convert_: {who}: {name}'s inputs are not finite (NaN or inf)")
    return out


def _augmented(conv: nn.Conv2d) -> Tensor:
    """The conv's weight as rows ``(out, d + 1)`` with the bias last, float64."""
    w = current_weight(conv).detach().reshape(conv.out_channels, -1).double()
    b = conv.bias.detach().double() if conv.bias is not None else w.new_zeros(len(w))
    return torch.cat([w, b[:, None]], 1)


def _solve(gram: Tensor, rhs: Tensor, damping: float) -> Tensor:
    """``rhs @ inv(gram)`` for a symmetric positive semi-definite ``gram``, ridge-damped."""
    eye = torch.eye(len(gram), dtype=gram.dtype)
    scale = float(gram.diagonal().mean()) or 1.0
    g = gram + max(damping, 1e-12) * scale * eye
    factor, info = torch.linalg.cholesky_ex(g)
    if int(info) != 0:  # not positive definite in floating point: a heavier ridge
        factor = torch.linalg.cholesky(gram + 1e-6 * scale * eye)
    return torch.cholesky_solve(rhs.T.contiguous(), factor).T


def _relative_error(fitted: Tensor, target: Tensor, moment: Tensor) -> float:
    diff = fitted - target
    err = float(torch.einsum("od,de,oe->", diff, moment, diff))
    ref = float(torch.einsum("od,de,oe->", target, moment, target))
    return math.sqrt(max(err, 0.0) / ref) if ref > 0 else 0.0


def fit_separable(
    weight: Tensor,
    bias: Tensor | None,
    moment: Tensor | None,
    multiplier: int = 1,
    iterations: int = 10,
    damping: float = 1e-6,
) -> tuple[Tensor, Tensor, Tensor, list[float]]:
    """The depthwise-separable least-squares fit of one conv (see the module).

    Args:
        weight: ``(out, in, kh, kw)``.
        bias: ``(out,)`` or None.
        moment: ``E[x x^T]`` of the augmented input patches, ``(in kh kw + 1,) * 2``; None:
            the weight-space fit (identity).
        multiplier: depthwise filters per input channel.
        iterations: alternating least-squares rounds.
        damping: relative ridge term.

    Returns:
        The depthwise weight ``(in m, 1, kh, kw)``, the pointwise weight ``(out, in m)``, its
        bias ``(out,)`` and the relative output error after the start and each round.
    """
    weight, bias = weight.detach(), (None if bias is None else bias.detach())
    o, i, kh, kw = weight.shape
    t, m = kh * kw, multiplier
    target = torch.cat(
        [weight.reshape(o, -1).double(), (bias if bias is not None else weight.new_zeros(o))
         .double()[:, None]], 1,
    )  # fmt: skip
    c = moment.double() if moment is not None else torch.eye(i * t + 1, dtype=torch.float64)
    c = c / float(c.diagonal().mean())
    # start: each input channel's best rank-m approximation
    u, s, vh = torch.linalg.svd(weight.double().reshape(o, i, t).permute(1, 0, 2))
    r = min(m, s.shape[1])
    depth = torch.zeros(i, m, t, dtype=torch.float64)
    point = torch.zeros(o, i, m, dtype=torch.float64)
    depth[:, :r] = vh[:, :r] * s[:, :r, None].sqrt()
    point[:, :, :r] = (u[:, :, :r] * s[:, None, :r].sqrt()).permute(1, 0, 2)
    point = point.reshape(o, i * m)
    if r < m:  # more filters than the kernel has positions: the spare ones start small
        g = torch.Generator().manual_seed(0)
        depth[:, r:] = 1e-3 * torch.randn(i, m - r, t, generator=g, dtype=torch.float64)
    j = i * m
    owner = torch.arange(j) // m  # the input channel each depthwise filter reads
    wc = target @ c  # (o, i t + 1)
    cxx = c[:-1, :-1].reshape(i, t, i, t)
    mean = c[:-1, -1].reshape(i, t)

    def spread(dw: Tensor) -> Tensor:
        """``[D as a (j, i t) block matrix, 0; 0, 1]``."""
        a = torch.zeros(j + 1, i * t + 1, dtype=torch.float64)
        a[:-1, :-1].view(j, i, t)[torch.arange(j), owner] = dw.reshape(j, t)
        a[-1, -1] = 1.0
        return a

    a = spread(depth)
    pb = _solve(a @ c @ a.T, wc @ a.T, damping)  # pointwise and bias for the start
    errors = [_relative_error(pb @ a, target, c)]
    for _ in range(iterations):
        # depthwise, pointwise fixed: normal equations G[(j,t),(j',t')] = (P^T P)[j,j'] *
        # C[(i(j),t),(i(j'),t')], right side (P^T (W C))[j, (i(j), t)] - (P^T b)[j] mu[i(j)]
        p, b = pb[:, :-1], pb[:, -1]
        ptp = p.T @ p
        gram = (ptp[:, None, :, None] * cxx[owner][:, :, owner]).reshape(j * t, j * t)
        right = (p.T @ wc[:, :-1]).view(j, i, t)[torch.arange(j), owner]
        right = right - (p.T @ b)[:, None] * mean[owner]
        depth = _solve(gram, right.reshape(1, -1), damping).reshape(i, m, t)
        a = spread(depth)
        pb = _solve(a @ c @ a.T, wc @ a.T, damping)
        errors.append(_relative_error(pb @ a, target, c))
    return depth.reshape(j, 1, kh, kw), pb[:, :-1], pb[:, -1], errors


def fit_pairs(
    weight: Tensor, bias: Tensor | None, moment: Tensor | None, damping: float = 1e-6
) -> tuple[Tensor, Tensor, Tensor, Tensor, float]:
    """The CReLU-pair least-squares fit of one conv (see the module).

    Returns:
        The half-width weight ``(out / 2, in, kh, kw)``, each output channel's source filter
        ``(out,)``, scale and bias, and the relative output error.
    """
    weight, bias = weight.detach(), (None if bias is None else bias.detach())
    o = weight.shape[0]
    target = torch.cat(
        [weight.reshape(o, -1).double(), (bias if bias is not None else weight.new_zeros(o))
         .double()[:, None]], 1,
    )  # fmt: skip
    d = target.shape[1] - 1
    c = moment.double() if moment is not None else torch.eye(d + 1, dtype=torch.float64)
    c = c / float(c.diagonal().mean())
    mu = c[:-1, -1] / c[-1, -1]  # E[x] (c is scaled: its corner is E[1] times the scale)
    cov = c[:-1, :-1] - c[-1, -1] * mu[:, None] * mu[None, :]
    cov = cov + damping * float(cov.diagonal().mean()) * torch.eye(d, dtype=torch.float64)
    w = target[:, :-1]
    k = w @ cov @ w.T
    diag = k.diagonal()
    tr = diag[:, None] + diag[None, :]
    det = diag[:, None] * diag[None, :] - k**2
    cost = (tr - (tr**2 - 4 * det).clamp_min(0).sqrt()) / 2  # the pair's unexplained energy
    cost.fill_diagonal_(float("inf"))
    free = torch.ones(o, dtype=torch.bool)
    half = torch.zeros(o // 2, d, dtype=torch.float64)
    source = torch.zeros(o, dtype=torch.long)
    scale = torch.zeros(o, dtype=torch.float64)
    upper = torch.triu_indices(o, o, 1)
    order = cost[upper[0], upper[1]].argsort(stable=True)
    n = 0
    for q in order.tolist():
        a, b = int(upper[0, q]), int(upper[1, q])
        if not (free[a] and free[b]):
            continue
        free[a] = free[b] = False
        rows = w[[a, b]]
        _vals, vecs = torch.linalg.eigh(rows @ cov @ rows.T)
        u = vecs[:, -1]
        if u[0] < 0:  # the first channel of a pair reads its filter positively
            u = -u
        half[n] = u @ rows
        source[a] = source[b] = n
        scale[a], scale[b] = u[0], u[1]
        n += 1
        if n == o // 2:
            break
    fitted_w = scale[:, None] * half[source]
    new_bias = target[:, -1] + w @ mu - fitted_w @ mu  # outputs keep their means
    fitted = torch.cat([fitted_w, new_bias[:, None]], 1)
    error = _relative_error(fitted, target, c)
    return half.reshape(o // 2, *weight.shape[1:]), source, scale, new_bias, error


def _convs(model: nn.Module, config: _FittedConversion, why: Any) -> dict[str, Any]:
    """Every selected layer: the plain conv to fit, or why it cannot be converted."""
    out: dict[str, Any] = {}
    for name, module in config.select(model):
        reason = conv_obstacle(module, groups=False) or why(module)
        out[name] = reason or plain_conv(module)
    return out


def _convert(
    model: nn.Module,
    config: _FittedConversion,
    example_inputs: Any,
    data: Any,
    method: str,
    why: Any,
    fit: Any,
) -> ConversionReport:
    chosen = _convs(model, config, why)
    convs = {n: m for n, m in chosen.items() if not isinstance(m, str)}
    moments: dict[str, Tensor | None] = dict.fromkeys(convs)
    if data is not None and convs:
        originals = dict(config.select(model))
        live = {n: originals[n] for n in convs}
        moments.update(patch_moments(model, live, data, config.samples, method))
    errors: dict[str, float] = {}
    bar = tqdm(total=len(convs), desc=f"{method}: fitting", unit="layer", leave=False,
               disable=not sys.stderr.isatty())  # fmt: skip

    def make(name: str, module: nn.Module) -> nn.Module | str:
        conv = chosen[name]
        if isinstance(conv, str):
            return conv
        bar.set_postfix_str(name)
        layer, error = fit(conv, moments[name])
        bar.update()
        errors[name] = error
        if config.max_error is not None and error > config.max_error:
            return f"fit error {error:.3f} above max_error={config.max_error:g}"
        return layer.to(conv.weight.device, conv.weight.dtype)

    try:
        report = convert_layers_(model, config, make, example_inputs, method)
    finally:
        bar.close()
    for row in report.layers:
        row.fit_error = errors.get(row.name)
    report.fitted_to = "the weights alone (no data)" if data is None else "the data's inputs"
    return report


def _separable_why(config: DepthwiseSeparable) -> Any:
    def why(module: nn.Conv2d) -> str:
        if module.kernel_size == (1, 1):
            return "a 1x1 conv has no spatial filter to separate"
        return ""

    return why


@register_handler("convert", DepthwiseSeparable)
def convert_separable_(
    model: nn.Module, config: DepthwiseSeparable, example_inputs: Any = None, *, data: Any = None
) -> ConversionReport:
    """Replace ``model``'s selected convs by fitted depthwise-separable pairs (see the module).

    Args:
        model: the trained network, changed in place.
        config: the conversion.
        example_inputs: for the report's FLOPs and output check.
        data: batches (``(inputs, targets)`` or inputs) the fit reads; None: fit the weights.
    """

    def fit(conv: nn.Conv2d, moment: Tensor | None) -> tuple[nn.Module, float]:
        depth, point, bias, errors = fit_separable(
            current_weight(conv).detach(), conv.bias, moment, config.multiplier,
            config.iterations, config.damping,
        )  # fmt: skip
        layer = DepthwiseSeparableConv2d(
            conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
            conv.dilation, config.multiplier,
        )  # fmt: skip
        with torch.no_grad():
            layer.depthwise.weight.copy_(depth)
            layer.pointwise.weight.copy_(point.reshape(*point.shape, 1, 1))
            assert layer.pointwise.bias is not None
            layer.pointwise.bias.copy_(bias)
        return layer, errors[-1]

    name = f"depthwise-separable (multiplier {config.multiplier})"
    return _convert(model, config, example_inputs, data, name, _separable_why(config), fit)


@register_handler("convert", CReLUPairs)
def convert_crelu_pairs_(
    model: nn.Module, config: CReLUPairs, example_inputs: Any = None, *, data: Any = None
) -> ConversionReport:
    """Replace ``model``'s selected convs by fitted half-width :class:`PairedConv2d` layers
    (see the module); arguments as :func:`convert_separable_`."""

    def why(module: nn.Conv2d) -> str:
        return f"{module.out_channels} output channels: pairs need an even number" if (
            module.out_channels % 2) else ""  # fmt: skip

    def fit(conv: nn.Conv2d, moment: Tensor | None) -> tuple[nn.Module, float]:
        half, source, scale, bias, error = fit_pairs(
            current_weight(conv).detach(), conv.bias, moment, config.damping
        )
        layer = PairedConv2d(
            conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
            conv.dilation,
        )  # fmt: skip
        with torch.no_grad():
            layer.conv.weight.copy_(half)
            layer.source.copy_(source)
            layer.scale.copy_(scale)
            layer.bias.copy_(bias)
        return layer, error

    return _convert(model, config, example_inputs, data, "CReLU pairs", why, fit)
