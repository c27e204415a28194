"""The distillation methods: one frozen config each, and the loss term its handler builds.

Every term sees, for each training batch, the student's and the teacher's outputs and the
intermediate tensors it asked for (by module path, see :mod:`.features`), and returns its
part of the loss plus the factor left on the ordinary cross-entropy with the labels:

- :class:`KD` (Hinton, Vinyals & Dean 2015): ``(1 - alpha) CE + alpha T^2 KL(p_t^T || p_s^T)``,
  the teacher's and student's softmax at temperature T (the ``T^2`` keeps the soft term's
  gradient on the scale of the hard one's as T changes).
- :class:`Logits` (Ba & Caruana 2014): the squared distance between the logits.
- :class:`FitNets` (Romero et al. 2015): a regressor (1x1 convolution, or a linear layer for
  flat features) from the student's guided layer to the teacher's hint layer, trained on the
  squared error first (stage 1, ``hint_epochs``), then Hinton's loss on the whole student.
- :class:`AttentionTransfer` (Zagoruyko & Komodakis 2017): at each pair of depths, the
  student's spatial attention map ``normalize(mean_c |f|^p)`` regressed on the teacher's,
  weighted ``beta / 2``.
- :class:`NST` (Huang & Wang 2017, neuron-selectivity transfer): the squared maximum mean
  discrepancy between the two sets of channel maps (each normalized over space) under a
  polynomial kernel.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from squeezer.config import Config, check
from squeezer.core import register_handler
from squeezer.errors import ConfigError

Pairs = tuple[tuple[str, str], ...]


def _check_pairs(name: str, pairs: Pairs) -> None:
    check(len(pairs) > 0, f"{name}: pairs must name at least one (student path, teacher path)")
    for pair in pairs:
        check(
            isinstance(pair, (tuple, list))
            and len(pair) == 2
            and all(isinstance(p, str) for p in pair),
            f"{name}: each pair is (student module path, teacher module path), got {pair!r}",
        )


@dataclass(frozen=True)
class KD(Config):
    """Hinton's knowledge distillation with a temperature.

    Attributes:
        temperature: softmax temperature of both networks in the soft term (> 0).
        alpha: weight of the soft term; the cross-entropy with the labels gets ``1 - alpha``.
    """

    temperature: float = 4.0
    alpha: float = 0.9

    def validate(self) -> None:
        check(self.temperature > 0, "KD: temperature must be > 0")
        check(0 <= self.alpha <= 1, "KD: alpha must be in [0, 1]")


@dataclass(frozen=True)
class Logits(Config):
    """Regression on the teacher's logits (Ba & Caruana's mimic learning).

    Attributes:
        alpha: weight of the squared logit distance; the cross-entropy gets ``1 - alpha``
            (1: logits only, as the paper trains on unlabelled data).
    """

    alpha: float = 1.0

    def validate(self) -> None:
        check(0 <= self.alpha <= 1, "Logits: alpha must be in [0, 1]")


@dataclass(frozen=True)
class FitNets(Config):
    """FitNets' hints, then knowledge distillation.

    Attributes:
        pairs: (student guided layer, teacher hint layer) module paths.
        hint_epochs: epochs of stage 1 (the regressor's squared error alone, which trains
            the student up to its guided layer); stage 2 then trains the whole student with
            Hinton's loss for the run's epochs.
        weight: weight of the hint loss in stage 1.
        temperature, alpha: stage 2's :class:`KD`.
    """

    pairs: Pairs = ()
    hint_epochs: int = 1
    weight: float = 1.0
    temperature: float = 4.0
    alpha: float = 0.9

    def validate(self) -> None:
        _check_pairs("FitNets", self.pairs)
        check(self.hint_epochs >= 0, "FitNets: hint_epochs must be >= 0")
        check(self.weight > 0, "FitNets: weight must be > 0")
        KD(self.temperature, self.alpha)


@dataclass(frozen=True)
class AttentionTransfer(Config):
    """Activation-based attention transfer at several depths.

    Attributes:
        pairs: (student, teacher) module paths whose outputs have the same spatial size.
        beta: weight of the attention loss (the paper: 1000, with its mean over the map).
        p: the power of the activation magnitudes (the paper: 2).
        with_kd: also add Hinton's term (``temperature``, ``alpha``), as the paper's AT+KD.
    """

    pairs: Pairs = ()
    beta: float = 1000.0
    p: float = 2.0
    with_kd: bool = False
    temperature: float = 4.0
    alpha: float = 0.9

    def validate(self) -> None:
        _check_pairs("AttentionTransfer", self.pairs)
        check(self.beta > 0, "AttentionTransfer: beta must be > 0")
        check(self.p > 0, "AttentionTransfer: p must be > 0")
        KD(self.temperature, self.alpha)


@dataclass(frozen=True)
class NST(Config):
    """Neuron-selectivity transfer: MMD between channel maps, polynomial kernel.

    Attributes:
        pairs: (student, teacher) module paths whose outputs have the same spatial size
            (the channel counts may differ).
        weight: weight of the MMD term (the paper's lambda).
        degree, coef: the kernel ``(x . y + coef)^degree`` (the paper: 2 and 0).
        with_kd: also add Hinton's term (``temperature``, ``alpha``), as the paper's NST+KD.
    """

    pairs: Pairs = ()
    weight: float = 50.0
    degree: int = 2
    coef: float = 0.0
    with_kd: bool = False
    temperature: float = 4.0
    alpha: float = 0.9

    def validate(self) -> None:
        _check_pairs("NST", self.pairs)
        check(self.weight > 0, "NST: weight must be > 0")
        check(isinstance(self.degree, int) and self.degree >= 1, "NST: degree must be >= 1")
        KD(self.temperature, self.alpha)


class Term(nn.Module):
    """One part of a distillation loss. Subclasses set the paths they read and implement
    :meth:`forward`; :meth:`setup` sees one probe batch's tensors before training starts (to
    check shapes and build regressors)."""

    student_paths: tuple[str, ...] = ()
    teacher_paths: tuple[str, ...] = ()

    def setup(self, s: dict[str, Tensor], t: dict[str, Tensor]) -> None:
        """Check the probe batch's tensors (and build what depends on their shapes)."""

    def forward(  # type: ignore[override]
        self, s_out: Tensor, t_out: Tensor, s: dict[str, Tensor], t: dict[str, Tensor]
    ) -> tuple[Tensor, float]:
        """``(this term's loss, factor on the cross-entropy with the labels)``."""
        raise NotImplementedError


def kd_loss(s_out: Tensor, t_out: Tensor, temperature: float) -> Tensor:
    """``T^2 KL(softmax(t / T) || softmax(s / T))``, averaged over the batch."""
    tt = float(temperature)
    return F.kl_div(
        F.log_softmax(s_out / tt, dim=1),
        F.log_softmax(t_out / tt, dim=1),
        reduction="batchmean",
        log_target=True,
    ) * (tt * tt)


class KDTerm(Term):
    def __init__(self, temperature: float, alpha: float) -> None:
        super().__init__()
        self.temperature, self.alpha = temperature, alpha

    def forward(self, s_out, t_out, s, t):  # type: ignore[no-untyped-def, override]
        return self.alpha * kd_loss(s_out, t_out, self.temperature), 1.0 - self.alpha


class LogitsTerm(Term):
    def __init__(self, alpha: float) -> None:
        super().__init__()
        self.alpha = alpha

    def forward(self, s_out, t_out, s, t):  # type: ignore[no-untyped-def, override]
        return self.alpha * F.mse_loss(s_out, t_out), 1.0 - self.alpha


def _spatial(name: str, sp: str, tp: str, a: Tensor, b: Tensor) -> None:
    if a.dim() < 3 or b.dim() < 3:
        raise ConfigError(
            f"{name}: {sp!r} gives {tuple(a.shape)} and {tp!r} {tuple(b.shape)}; both must be "
            "feature maps (batch, channels, positions...)"
        )
    if a.shape[2:] != b.shape[2:]:
        raise ConfigError(
            f"{name}: student {sp!r} has spatial size {tuple(a.shape[2:])}, teacher {tp!r} "
            f"{tuple(b.shape[2:])}; pair layers of the same resolution"
        )


def attention_map(f: Tensor, p: float = 2.0) -> Tensor:
    """Zagoruyko's activation-based attention: ``mean_c |f|^p`` over channels, flattened and
    L2-normalized per example."""
    return F.normalize(f.abs().pow(p).mean(1).flatten(1), dim=1)


class PairTerm(Term):
    """A term over (student, teacher) pairs of feature maps of the same spatial size, plus
    Hinton's term when the config asks for it (``with_kd``). Subclasses give :meth:`pairs_loss`."""

    name = ""

    def __init__(self, config: AttentionTransfer | NST) -> None:
        super().__init__()
        self.pairs = tuple(tuple(p) for p in config.pairs)
        self.student_paths = tuple(p[0] for p in self.pairs)
        self.teacher_paths = tuple(p[1] for p in self.pairs)
        self.kd = KDTerm(config.temperature, config.alpha) if config.with_kd else None

    def setup(self, s, t):  # type: ignore[no-untyped-def, override]
        for sp, tp in self.pairs:
            _spatial(self.name, sp, tp, s[sp], t[tp])

    def pairs_loss(self, s: dict[str, Tensor], t: dict[str, Tensor]) -> Tensor:
        raise NotImplementedError  # every subclass defines it

    def forward(self, s_out, t_out, s, t):  # type: ignore[no-untyped-def, override]
        loss = self.pairs_loss(s, t)
        if self.kd is None:
            return loss, 1.0
        soft, ce = self.kd(s_out, t_out, s, t)
        return loss + soft, ce


class AttentionTerm(PairTerm):
    name = "AttentionTransfer"

    def __init__(self, config: AttentionTransfer) -> None:
        super().__init__(config)
        self.beta, self.p = config.beta, config.p

    def pairs_loss(self, s: dict[str, Tensor], t: dict[str, Tensor]) -> Tensor:
        loss = sum(
            (attention_map(s[sp], self.p) - attention_map(t[tp], self.p)).pow(2).mean()
            for sp, tp in self.pairs
        )
        return self.beta / 2 * loss


def mmd2_poly(fs: Tensor, ft: Tensor, degree: int = 2, coef: float = 0.0) -> Tensor:
    """Squared MMD between the channel maps of ``fs`` and ``ft`` (batch, channels,
    positions), each map L2-normalized over its positions; kernel ``(x . y + coef)^degree``;
    averaged over the batch."""
    a = F.normalize(fs.flatten(2), dim=2)
    b = F.normalize(ft.flatten(2), dim=2)

    def k(x: Tensor, y: Tensor) -> Tensor:
        return (x @ y.transpose(1, 2) + coef).pow(degree).mean((1, 2))

    return (k(a, a) + k(b, b) - 2 * k(a, b)).mean()


class NSTTerm(PairTerm):
    name = "NST"

    def __init__(self, config: NST) -> None:
        super().__init__(config)
        self.weight, self.degree, self.coef = config.weight, config.degree, config.coef

    def pairs_loss(self, s: dict[str, Tensor], t: dict[str, Tensor]) -> Tensor:
        return self.weight * sum(
            mmd2_poly(s[sp], t[tp], self.degree, self.coef) for sp, tp in self.pairs
        )


class HintTerm(Term):
    """FitNets' stage 1: ``weight * |r(student guided) - teacher hint|^2`` and no
    cross-entropy. The regressors are built at :meth:`setup` from the probe's shapes."""

    def __init__(self, config: FitNets) -> None:
        super().__init__()
        self.pairs = tuple(tuple(p) for p in config.pairs)
        self.student_paths = tuple(p[0] for p in self.pairs)
        self.teacher_paths = tuple(p[1] for p in self.pairs)
        self.weight = config.weight
        self.regressors = nn.ModuleList()

    def setup(self, s, t):  # type: ignore[no-untyped-def, override]
        self.regressors = nn.ModuleList()
        for sp, tp in self.pairs:
            a, b = s[sp], t[tp]
            if a.dim() == 2 and b.dim() == 2:
                self.regressors.append(nn.Linear(a.shape[1], b.shape[1]))
                continue
            if a.dim() != 4 or b.dim() != 4:
                raise ConfigError(
                    f"FitNets: {sp!r} gives {tuple(a.shape)} and {tp!r} {tuple(b.shape)}; pair "
                    "two flat features or two 2-d feature maps"
                )
            (hs, ws), (ht, wt) = a.shape[2:], b.shape[2:]
            if hs < ht or ws < wt or hs % ht or ws % wt:
                raise ConfigError(
                    f"FitNets: student {sp!r} is {hs}x{ws}, teacher {tp!r} {ht}x{wt}; the "
                    "guided layer's map must equal the hint's or be a whole multiple of it"
                )
            reg = nn.Conv2d(a.shape[1], b.shape[1], 1)
            if (hs, ws) != (ht, wt):
                reg = nn.Sequential(reg, nn.AvgPool2d((hs // ht, ws // wt)))
            self.regressors.append(reg.to(a.device))

    def forward(self, s_out, t_out, s, t):  # type: ignore[no-untyped-def, override]
        loss = sum(
            F.mse_loss(reg(s[sp]), t[tp])
            for reg, (sp, tp) in zip(self.regressors, self.pairs, strict=True)
        )
        return self.weight * loss, 0.0


@register_handler("distill-term", KD)
def _kd(config: KD) -> Term:
    return KDTerm(config.temperature, config.alpha)


@register_handler("distill-term", Logits)
def _logits(config: Logits) -> Term:
    return LogitsTerm(config.alpha)


@register_handler("distill-term", AttentionTransfer)
def _at(config: AttentionTransfer) -> Term:
    return AttentionTerm(config)


@register_handler("distill-term", NST)
def _nst(config: NST) -> Term:
    return NSTTerm(config)


@register_handler("distill-term", FitNets)
def _fitnets(config: FitNets) -> Term:
    """Stage 2's term; stage 1's :class:`HintTerm` is built by ``distill`` itself."""
    return KDTerm(config.temperature, config.alpha)


def term_for(config: Config) -> Term:
    """The loss term of a distillation config."""
    from squeezer.core import handler_for

    return handler_for("distill-term", config)(config)
