"""Weight parametrizations that are training methods: they add a term to the loss while the
network trains and turn into their deployed form when training is over.

Sparse variational dropout (a KL divergence per weight) and soft weight-sharing (the negative
log of a Gaussian-mixture prior) are such methods. Each is a
:class:`TrainedParametrization` registered on a layer's ``weight``; nothing else about the
model changes, so any ``nn.Linear`` or ``nn.Conv2d`` of a user's model can carry one.

- :func:`model_penalty` sums their terms; :func:`squeezer.train.fit` adds it to the loss
  divided by the number of training examples (the per-example evidence lower bound, or the
  per-example MAP objective), so nothing has to be passed to ``fit``.
- :class:`PenaltyWarmup` raises every term's ``scale`` linearly from 0 to 1 (the KL warm-up
  of variational training).
- :func:`finish_` replaces each one by its deployed form: a pruning mask, or shared values.
  The ``.sqz`` coder finishes a copy by itself, so a model can be saved at any time.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from torch import Tensor, nn
from torch.nn.utils import parametrize

from squeezer.errors import ConfigError
from squeezer.train.callbacks import Callback, TrainState


class TrainedParametrization(nn.Module, ABC):
    """Base class of a parametrization that trains with a penalty and finishes into a
    deployed form.

    Attributes:
        scale: the factor on :meth:`penalty` (warm-up sets it; 1 otherwise).
    """

    scale: float = 1.0

    @abstractmethod
    def penalty(self, value: Tensor) -> Tensor:
        """The term added to the loss (before the division by the number of examples), given
        the tensor that enters this parametrization."""

    @abstractmethod
    def finish_(self, module: nn.Module, tensor: str, value: Tensor) -> dict[str, object]:
        """Replace this parametrization of ``module.<tensor>`` by its deployed form, given the
        tensor that enters it; returns a short summary (kept weights, clusters...)."""


def _entries(model: nn.Module):
    """``(module name, module, tensor name, index, parametrization)`` of every trained
    parametrization of ``model``."""
    for name, module in model.named_modules():
        if not parametrize.is_parametrized(module):
            continue
        for tensor, plist in module.parametrizations.items():
            for i, p in enumerate(plist):
                if isinstance(p, TrainedParametrization):
                    yield name, module, tensor, i, p


def value_entering(module: nn.Module, tensor: str, index: int) -> Tensor:
    """The tensor that enters parametrization ``index`` of ``module.<tensor>``: the stored
    original passed through the parametrizations before it."""
    plist = module.parametrizations[tensor]
    value = plist.original
    for p in list(plist)[:index]:
        value = p(value)
    return value


def trained_parametrizations(model: nn.Module) -> dict[str, TrainedParametrization]:
    """``"layer.tensor"`` -> its trained parametrization, for every one in ``model``."""
    return {f"{n}.{t}" if n else t: p for n, _, t, _, p in _entries(model)}


def model_penalty(model: nn.Module) -> Tensor | None:
    """The sum of every trained parametrization's ``scale * penalty`` (None when there is
    none); ``fit`` divides it by the number of training examples."""
    total = None
    for _, module, tensor, i, p in _entries(model):
        if p.scale == 0:
            continue
        term = p.penalty(value_entering(module, tensor, i)) * p.scale
        total = term if total is None else total + term
    return total


def auxiliary_loss(model: nn.Module) -> Tensor | None:
    """The sum of the ``aux_loss`` tensors that layers left in their last forward pass (a
    mixture of experts' load balancing, a per-batch term that ``fit`` adds as it is), each
    taken once: it is cleared on reading. None when there is none."""
    total = None
    for module in model.modules():
        term = getattr(module, "aux_loss", None)
        if isinstance(term, Tensor):
            total = term if total is None else total + term
            module.aux_loss = None
    return total


def finish_(model: nn.Module) -> dict[str, dict[str, object]]:
    """Turn every trained parametrization of ``model`` into its deployed form, in place.

    Returns:
        ``"layer.tensor"`` -> the method's summary of what it kept.
    """
    done = {}
    for name, module, tensor, i, p in list(_entries(model)):
        value = value_entering(module, tensor, i).detach().clone()
        key = f"{name}.{tensor}" if name else tensor
        done[key] = p.finish_(module, tensor, value)
    return done


def has_trained_parametrizations(model: nn.Module) -> bool:
    return next(_entries(model), None) is not None


class PenaltyWarmup(Callback):
    """Raise the ``scale`` of every trained parametrization linearly from 0 to 1 over the
    first ``epochs`` epochs (the KL warm-up of variational training), then hold it at 1.

    Args:
        epochs: length of the ramp (fractional epochs allowed; 0 leaves the scales at 1).
    """

    def __init__(self, epochs: float = 5.0) -> None:
        if epochs < 0:
            raise ConfigError("PenaltyWarmup: epochs must be >= 0")
        self.epochs = epochs

    def on_batch_start(self, state: TrainState) -> None:
        progress = state.epoch + state.batch_index / max(state.batches_per_epoch, 1)
        scale = 1.0 if self.epochs == 0 else min(1.0, progress / self.epochs)
        for *_, p in _entries(state.model):
            p.scale = scale

    def on_fit_end(self, state: TrainState) -> None:
        for *_, p in _entries(state.model):
            p.scale = 1.0
