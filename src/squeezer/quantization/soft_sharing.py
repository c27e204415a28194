"""Soft weight-sharing (Ullrich, Meeds & Welling, ICLR 2017, "Soft Weight-Sharing for Neural
Network Compression"; after Nowlan & Hinton 1992).

While the network retrains, every selected weight is pulled towards a Gaussian mixture that
is learned with it: J components with trainable means, variances and mixing proportions,
plus one component at exactly zero whose mixing proportion is held at ``pi_zero``. The loss is

    cross-entropy + tau / N * ( -sum_i log p(w_i) - log Gamma hyper-prior on the precisions ),

with N training examples. Afterwards each weight is snapped to the mean of the component most
responsible for it; the zero component's weights become exact zeros. The layer is left with a
handful of distinct values, stored as a codebook plus indices (the ``.sqz`` coder then prunes
and Huffman codes them), and its shared values can be fine-tuned like k-means sharing's.

    sq.quantize_(model, sq.quantization.SoftWeightSharing(components=16))
    sq.fit(model, train, optimizer="adam", lr=5e-4, weight_decay=0)   # the prior term is added
    sq.train.finish_(model)                                           # weights snapped

One prior is shared by every selected layer, as in the paper. In evaluation mode the layers
already use the snapped weights, so ``evaluate`` during training shows what snapping gives.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from squeezer.config import check
from squeezer.core import LayerSelection, PerLayerReport, register_handler
from squeezer.errors import ModelError
from squeezer.train.penalty import TrainedParametrization

LOG_2PI = math.log(2 * math.pi)


@dataclass(frozen=True)
class SoftWeightSharing(LayerSelection):
    """Soft weight-sharing with a Gaussian-mixture prior learned during retraining.

    Attributes:
        components: non-zero mixture components (each layer ends with at most this many
            distinct non-zero values; the paper: 16).
        tau: weight of the prior term against the per-example cross-entropy (the paper:
            0.005).
        pi_zero: mixing proportion of the zero component, held fixed (the paper: 0.99 to
            0.999). Lower keeps more weights: at snapping a weight goes to zero unless it
            sits about ``sqrt(2 ln(pi_zero / pi_j))`` standard deviations from zero, so a
            high value removes weights the network still uses when retraining has not yet
            gathered them on the components (on LeNet-300-100, 0.9 snapped with 4% error
            where 0.99 gave 34%, after 3 epochs).
        init_range: the non-zero means start evenly spaced in [-init_range, init_range];
            None: the largest magnitude among the selected weights.
        hyper_prior: a Gamma hyper-prior on the precisions (the paper's: shape 5000, rate 2
            for the zero component, shape 250, rate 0.1 for the others), which keeps the
            variances from collapsing.
        mean_lr_scale: learning rate of the means relative to the weights'.
        variance_lr_scale: learning rate of the log variances relative to the weights'.
        mixing_lr_scale: learning rate of the mixing logits relative to the weights'.
        layers, exclude, layer_types: which layers (default: every Linear and Conv).
    """

    components: int = 16
    tau: float = 0.005
    pi_zero: float = 0.99
    init_range: float | None = None
    hyper_prior: bool = True
    mean_lr_scale: float = 0.2
    variance_lr_scale: float = 6.0
    mixing_lr_scale: float = 6.0

    def validate(self) -> None:
        super().validate()
        check(
            isinstance(self.components, int) and 1 <= self.components <= 255,
            "SoftWeightSharing: components must be an integer in [1, 255] (a .sqz codebook "
            "holds at most 255 values)",
        )
        check(self.tau > 0, "SoftWeightSharing: tau must be > 0")
        check(0 < self.pi_zero < 1, "SoftWeightSharing: pi_zero must be in (0, 1)")
        check(
            self.init_range is None or self.init_range > 0,
            "SoftWeightSharing: init_range must be > 0",
        )
        for name in ("mean_lr_scale", "variance_lr_scale", "mixing_lr_scale"):
            check(getattr(self, name) >= 0, f"SoftWeightSharing: {name} must be >= 0")


class _MixtureNLL(torch.autograd.Function):
    """``-sum_i log sum_j pi_j N(w_i | mu_j, sigma_j^2)`` with its gradients written out
    through the responsibilities: a few passes over the (weights x components) table
    instead of autograd's many temporaries (the prior term dominated a training step)."""

    @staticmethod
    def forward(ctx, w, means, log_var, log_mix):  # type: ignore[override]
        flat = w.reshape(-1, 1)
        inv = torch.exp(-log_var)
        diff = flat - means
        lp = -0.5 * (diff * diff * inv + log_var + LOG_2PI) + log_mix
        lse = torch.logsumexp(lp, dim=1, keepdim=True)
        resp = torch.exp(lp - lse)  # responsibilities
        ctx.save_for_backward(diff, resp, inv)
        ctx.shape = w.shape
        return -lse.sum()

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        diff, resp, inv = ctx.saved_tensors
        rd = resp * diff * inv  # r_ij (w_i - mu_j) / sigma_j^2
        g_w = rd.sum(1).reshape(ctx.shape) * grad
        g_means = -rd.sum(0) * grad
        g_log_var = 0.5 * (resp - rd * diff).sum(0) * grad
        g_log_mix = -resp.sum(0) * grad
        return g_w, g_means, g_log_var, g_log_mix


class GaussianMixturePrior(nn.Module):
    """A one-dimensional Gaussian mixture whose component 0 sits at exactly zero with a fixed
    mixing proportion; the other means, every variance and the other proportions train."""

    def __init__(
        self,
        means: Tensor,
        log_var: Tensor,
        pi_zero: float,
        hyper_prior: bool = True,
        lr_scales: tuple[float, float, float] = (1.0, 1.0, 1.0),
    ) -> None:
        super().__init__()
        self.means = nn.Parameter(means.detach().clone().float())
        self.log_var = nn.Parameter(log_var.detach().clone().float())  # [zero, others...]
        self.logits = nn.Parameter(torch.zeros(means.numel()))
        self.pi_zero = float(pi_zero)
        self.hyper_prior = bool(hyper_prior)
        for p, scale in zip((self.means, self.log_var, self.logits), lr_scales, strict=True):
            p._sq_lr_scale = scale  # type: ignore[attr-defined]
            p._sq_no_decay = True  # type: ignore[attr-defined]

    def all_means(self) -> Tensor:
        return torch.cat([self.means.new_zeros(1), self.means])

    def log_mixing(self) -> Tensor:
        rest = math.log1p(-self.pi_zero) + torch.log_softmax(self.logits, 0)
        return torch.cat([rest.new_full((1,), math.log(self.pi_zero)), rest])

    def component_log_probs(self, w: Tensor) -> Tensor:
        """log(pi_j N(w | mu_j, sigma_j^2)) for every weight (rows) and component (columns)."""
        w = w.reshape(-1, 1)
        var = self.log_var.exp()
        sq = (w - self.all_means()) ** 2
        return -0.5 * (sq / var + self.log_var + LOG_2PI) + self.log_mixing()

    def log_prob(self, w: Tensor) -> Tensor:
        """log p(w) of every weight."""
        return torch.logsumexp(self.component_log_probs(w), dim=1)

    def nll(self, w: Tensor) -> Tensor:
        """``-sum log p(w)`` over the weights, with hand-written gradients (fast)."""
        return _MixtureNLL.apply(w, self.all_means(), self.log_var, self.log_mixing())

    def assign(self, w: Tensor) -> Tensor:
        """The most responsible component of every weight (0 = the zero component); exact
        zeros (masked weights) always go to the zero component."""
        with torch.no_grad():
            comp = self.component_log_probs(w).argmax(1).reshape(w.shape)
        return torch.where(w == 0, torch.zeros_like(comp), comp)

    def hyper_penalty(self) -> Tensor:
        """-log of the Gamma hyper-prior on the precisions (up to a constant)."""
        if not self.hyper_prior:
            return self.log_var.new_zeros(())
        shape = torch.full_like(self.log_var, 250.0)
        rate = torch.full_like(self.log_var, 0.1)
        shape[0], rate[0] = 5000.0, 2.0
        log_precision = -self.log_var
        return -((shape - 1) * log_precision - rate * log_precision.exp()).sum()

    def extra_repr(self) -> str:
        return f"components={self.means.numel()}, pi_zero={self.pi_zero:g}"


class SoftSharedWeight(TrainedParametrization):
    """Parametrization of one layer under soft weight-sharing: the weight itself while
    training (the prior term acts through :meth:`penalty`), the snapped weight in evaluation.

    Args:
        prior: the mixture, shared by every layer of the model.
        tau: weight of the prior term.
        share: this layer's fraction of all governed weights (its part of the hyper-prior).
    """

    def __init__(self, prior: GaussianMixturePrior, tau: float, share: float) -> None:
        super().__init__()
        self.prior = prior
        self.tau = float(tau)
        self.share = float(share)

    def snapped(self, w: Tensor) -> Tensor:
        return self.prior.all_means().detach()[self.prior.assign(w)]

    def forward(self, w: Tensor) -> Tensor:
        if self.training:
            return w
        return self.snapped(w)

    def penalty(self, value: Tensor) -> Tensor:
        # tau weighs the whole log prior, hyper-prior included (the paper's objective,
        # -log p(T | X, w) - tau log p(w, mu, sigma, pi))
        return self.tau * (self.prior.nll(value) + self.share * self.prior.hyper_penalty())

    def finish_(self, module: nn.Module, tensor: str, value: Tensor) -> dict[str, object]:
        from squeezer.core import remove_parametrization_
        from squeezer.quantization.kmeans import SharedWeights

        comp = self.prior.assign(value)
        used = torch.unique(comp[comp > 0])
        table = torch.zeros(self.prior.means.numel() + 1, dtype=torch.int64)
        table[used] = torch.arange(1, used.numel() + 1)
        indices = table[comp]
        centroids = self.prior.all_means().detach()[used].float()
        if centroids.numel() == 0:
            centroids = torch.zeros(1)
        remove_parametrization_(module, tensor)
        with torch.no_grad():
            getattr(module, tensor).copy_(torch.cat([torch.zeros(1), centroids])[indices])
        parametrize.register_parametrization(module, tensor, SharedWeights(indices, centroids))
        with torch.no_grad():  # the means themselves, not right_inverse's averages of them
            module.parametrizations[tensor].original.copy_(centroids)
        return {"clusters": int(used.numel()), "zero": float((indices == 0).float().mean())}

    def extra_repr(self) -> str:
        return f"tau={self.tau:g}"


def mixture_of(model: nn.Module) -> GaussianMixturePrior | None:
    """The prior soft weight-sharing put on ``model`` (None if there is none)."""
    return next((m for m in model.modules() if isinstance(m, GaussianMixturePrior)), None)


@register_handler("quantize", SoftWeightSharing)
def soft_weight_sharing_(
    model: nn.Module,
    config: SoftWeightSharing,
    example_inputs: object = None,
    *,
    data: object = None,
) -> PerLayerReport:
    """Put one Gaussian-mixture prior on the selected layers' weights (in place).

    Train with :func:`squeezer.train.fit` (the prior's term is added by itself; Adam, no
    weight decay), then :func:`squeezer.train.finish_` snaps the weights to the component
    means.

    Raises:
        ModelError: no selected layer with a weight, or a weight already shared or quantized.
    """
    from squeezer.pruning.magnitude import require_plain_or_masked

    chosen = [
        (n, m) for n, m in config.select(model) if isinstance(getattr(m, "weight", None), Tensor)
    ]
    if not chosen:
        raise ModelError("quantize_: SoftWeightSharing found no layer with a weight")
    for name, module in chosen:
        require_plain_or_masked(module, name, "quantize_: soft weight-sharing")
    with torch.no_grad():
        weights = [m.weight.detach() for _, m in chosen]
    total = sum(w.numel() for w in weights)
    top = config.init_range or max(float(w.abs().max()) for w in weights) or 1.0
    j = config.components
    pos, neg = (j + 1) // 2, j // 2  # evenly spaced on each side of zero, none at zero
    means = torch.cat(
        [-top * torch.arange(neg, 0, -1) / max(neg, 1), top * torch.arange(1, pos + 1) / pos]
    )
    spacing = 2 * top / max(j, 1)
    log_var = torch.full((j + 1,), math.log((0.5 * spacing) ** 2))
    everything = torch.cat([w.flatten() for w in weights])
    log_var[0] = math.log(float(everything.std()) ** 2 + 1e-12)
    prior = GaussianMixturePrior(
        means,
        log_var,
        config.pi_zero,
        config.hyper_prior,
        (config.mean_lr_scale, config.variance_lr_scale, config.mixing_lr_scale),
    )
    report = {}
    for name, module in chosen:
        n = module.weight.numel()
        parametrize.register_parametrization(
            module, "weight", SoftSharedWeight(prior, config.tau, n / total)
        )
        report[name] = n
    return PerLayerReport(
        "soft weight-sharing: weights under the prior",
        report,
        components=j,
        note="train with sq.fit (Adam, no weight decay), then sq.train.finish_(model)",
    )
