"""Sparse variational dropout (Molchanov, Ashukha & Vetrov, ICML 2017, "Variational Dropout
Sparsifies Deep Neural Networks").

Every weight gets a Gaussian posterior N(theta, sigma^2) with its own variance; the prior is
log-uniform, and the KL divergence to it, approximated as in the paper,

    -KL = k1 * sigmoid(k2 + k3 * log alpha) - 0.5 * log(1 + 1/alpha) - k1,
    alpha = sigma^2 / theta^2,  k1 = 0.63576, k2 = 1.87320, k3 = 1.48695,

pushes alpha up wherever the data allow it. A weight whose log alpha exceeds a threshold
(3: a noise standard deviation 4.5 times its mean) carries only noise and is removed. Training
uses the additive reparameterization (sigma^2 is the parameter, not alpha) and the local
reparameterization trick: the layer's output is sampled from its Gaussian,

    mean = layer(x; theta),  var = layer(x^2; sigma^2),  y = mean + sqrt(var) * eps,

so the gradient noise stays low. At evaluation the layer uses theta with the removed weights
at zero, which is the network the file holds.

    sq.prune_(model, sq.pruning.SparseVD())           # training form
    sq.fit(model, train, optimizer="adam", lr=1e-3, weight_decay=0,
           callbacks=[sq.train.PenaltyWarmup(5)])       # the KL term is added by itself
    sq.train.finish_(model)                             # masks: an ordinary pruned model

The mask then feeds weight sharing and Huffman coding like magnitude pruning's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize

from squeezer.config import check
from squeezer.core import LayerSelection, PerLayerReport, register_handler
from squeezer.errors import ModelError
from squeezer.train.penalty import TrainedParametrization, value_entering

K1, K2, K3 = 0.63576, 1.87320, 1.48695
LOG_ALPHA_RANGE = (-10.0, 10.0)
EPS = 1e-8
SUPPORTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass(frozen=True)
class SparseVD(LayerSelection):
    """Sparse variational dropout on the selected Linear and Conv layers.

    Attributes:
        threshold: weights with log alpha above this are removed (the paper: 3).
        init_log_sigma2: initial log variance of every weight (small: training starts from
            the trained network's function).
        variance_lr_scale: learning rate of the log variances relative to the weights' (above
            1, the noise grows and weights are removed in fewer epochs).
        layers, exclude, layer_types: which layers (default: every Linear and Conv).
    """

    threshold: float = 3.0
    init_log_sigma2: float = -10.0
    variance_lr_scale: float = 1.0

    def validate(self) -> None:
        super().validate()
        check(self.variance_lr_scale > 0, "SparseVD: variance_lr_scale must be > 0")
        lo, hi = LOG_ALPHA_RANGE
        check(lo < self.threshold < hi, f"SparseVD: threshold must be in ({lo:g}, {hi:g})")
        check(self.init_log_sigma2 < 0, "SparseVD: init_log_sigma2 must be < 0")


class VariationalDropoutWeight(TrainedParametrization):
    """Parametrization carrying each weight's log variance; the layer's forward hook samples
    the output (local reparameterization) while training.

    In training mode the weight is theta itself; in evaluation mode weights with
    ``log_alpha > threshold`` are zero.
    """

    def __init__(
        self, weight: Tensor, threshold: float, init_log_sigma2: float, lr_scale: float = 1.0
    ) -> None:
        super().__init__()
        self.log_sigma2 = nn.Parameter(torch.full_like(weight.detach(), init_log_sigma2))
        self.log_sigma2._sq_no_decay = True  # type: ignore[attr-defined]
        self.log_sigma2._sq_lr_scale = lr_scale  # type: ignore[attr-defined]
        self.threshold = float(threshold)

    def log_alpha(self, theta: Tensor) -> Tensor:
        la = self.log_sigma2 - torch.log(theta * theta + EPS)
        return la.clamp(*LOG_ALPHA_RANGE)

    def keep(self, theta: Tensor) -> Tensor:
        """The weights kept: log alpha at most the threshold."""
        return self.log_alpha(theta) <= self.threshold

    def forward(self, theta: Tensor) -> Tensor:
        if self.training:
            return theta
        return theta * self.keep(theta).to(theta.dtype)

    def penalty(self, value: Tensor) -> Tensor:
        la = self.log_alpha(value)
        neg_kl = K1 * torch.sigmoid(K2 + K3 * la) - 0.5 * F.softplus(-la) - K1
        return -neg_kl.sum()

    def finish_(self, module: nn.Module, tensor: str, value: Tensor) -> dict[str, object]:
        from squeezer.core import remove_parametrization_
        from squeezer.pruning.magnitude import set_mask

        with torch.no_grad():
            keep = self.keep(value)
        module._forward_hooks.pop(getattr(module, "_sq_vd_hook", None), None)
        if hasattr(module, "_sq_vd_hook"):
            del module._sq_vd_hook
        remove_parametrization_(module, tensor)
        with torch.no_grad():
            getattr(module, tensor).copy_(value)
        set_mask(module, keep)
        return {"kept": int(keep.sum()), "of": keep.numel()}

    def extra_repr(self) -> str:
        return f"threshold={self.threshold:g}"


def _local_reparameterization(module: nn.Module, args: tuple, output: Tensor) -> Tensor | None:
    """Forward hook: while training, add sqrt(layer(x^2; sigma^2)) * eps to the output."""
    if not module.training or not parametrize.is_parametrized(module, "weight"):
        return None
    vd = next(
        (p for p in module.parametrizations.weight if isinstance(p, VariationalDropoutWeight)),
        None,
    )
    if vd is None:
        return None
    x = args[0]
    sigma2 = vd.log_sigma2.exp()
    if vd is not module.parametrizations.weight[0]:  # after a mask: pruned weights stay zero
        index = list(module.parametrizations.weight).index(vd)
        sigma2 = sigma2 * (value_entering(module, "weight", index) != 0).to(sigma2.dtype)
    if isinstance(module, nn.Linear):
        var = F.linear(x * x, sigma2)
    else:
        var = module._conv_forward(x * x, sigma2, None)
    return output + torch.sqrt(var + EPS) * torch.randn_like(output)


def log_alpha_of(module: nn.Module) -> Tensor | None:
    """The log alpha of every weight of a layer under sparse VD (None for other layers)."""
    if not parametrize.is_parametrized(module, "weight"):
        return None
    for i, p in enumerate(module.parametrizations.weight):
        if isinstance(p, VariationalDropoutWeight):
            with torch.no_grad():
                return p.log_alpha(value_entering(module, "weight", i))
    return None


def vd_sparsity(model: nn.Module) -> dict[str, float]:
    """Per layer under sparse VD: the fraction of weights its threshold removes now."""
    out = {}
    for name, module in model.named_modules():
        la = log_alpha_of(module)
        if la is not None:
            vd = next(
                p for p in module.parametrizations.weight if isinstance(p, VariationalDropoutWeight)
            )
            out[name] = float((la > vd.threshold).float().mean())
    return out


@register_handler("prune", SparseVD)
def sparse_vd_(
    model: nn.Module, config: SparseVD, example_inputs: object = None, *, data: object = None
) -> PerLayerReport:
    """Put the selected layers of ``model`` in sparse VD's training form (in place).

    Nothing is removed yet: train with :func:`squeezer.train.fit` (the KL term is added by
    itself; use Adam and no weight decay), then :func:`squeezer.train.finish_` turns the
    weights whose log alpha exceeds the threshold into a pruning mask.

    Returns:
        Per layer, the number of weights that now carry a variance.

    Raises:
        ModelError: no selected layer, or a layer of a type sparse VD does not support, or
            one whose weight already has a parametrization other than a pruning mask.
    """
    from squeezer.pruning.magnitude import require_plain_or_masked

    chosen = list(config.select(model))
    if not chosen:
        raise ModelError("prune_: SparseVD found no layer of the given types and names")
    report = {}
    for name, module in chosen:
        if not isinstance(module, SUPPORTED):
            raise ModelError(
                f"prune_: SparseVD supports Linear and Conv1d/2d/3d, not {name} "
                f"({type(module).__name__}); leave it out with exclude="
            )
        require_plain_or_masked(module, name, "prune_: sparse VD")
        with torch.no_grad():
            weight = module.weight.detach().clone()
        parametrize.register_parametrization(
            module,
            "weight",
            VariationalDropoutWeight(
                weight, config.threshold, config.init_log_sigma2, config.variance_lr_scale
            ),
        )
        handle = module.register_forward_hook(_local_reparameterization)
        module._sq_vd_hook = handle.id
        report[name] = int(weight.numel())
    return PerLayerReport(
        "sparse variational dropout: weights with a variance",
        report,
        threshold=config.threshold,
        note="train with sq.fit (Adam, no weight decay), then sq.train.finish_(model)",
    )


def kl_at(log_alpha: float) -> float:
    """The approximate KL of one weight at ``log_alpha`` (for tests and plots)."""
    sigmoid = 1 / (1 + math.exp(-(K2 + K3 * log_alpha)))
    return -(K1 * sigmoid - 0.5 * math.log1p(math.exp(-log_alpha)) - K1)
