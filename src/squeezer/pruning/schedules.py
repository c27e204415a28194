"""Pruning schedules: one-shot, iterative prune-retrain, and gradual (AGP).

- One-shot: :func:`squeezer.pruning.prune_` once, then fine-tune.
- Iterative (Han et al. 2015): raise the sparsity over several rounds, retraining after each.
- Gradual (Zhu & Gupta 2017, "To prune, or not to prune"): during training, every ``frequency``
  steps from ``start_step`` to ``end_step``, prune to
  s_t = s_f + (s_i - s_f) (1 - (t - t_0) / (t_end - t_0))^3.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from squeezer.errors import ConfigError
from squeezer.pruning.magnitude import Magnitude
from squeezer.pruning.verb import prune_
from squeezer.train import Callback, TrainConfig, TrainState, fit


def scaled(config: Magnitude, fraction: float, schedule: str = "geometric") -> Magnitude:
    """``config`` part of the way (``fraction`` in [0, 1]) to its targets.

    ``"linear"`` scales each sparsity s by ``fraction``; ``"geometric"`` keeps the fraction
    (1 - s) ** fraction of the weights, so each round removes the same share of the weights
    still there, which keeps late rounds gentle at high sparsity.
    """
    if schedule not in ("linear", "geometric"):
        raise ConfigError("schedule must be 'linear' or 'geometric'")

    def part(s: float) -> float:
        return s * fraction if schedule == "linear" else 1.0 - (1.0 - s) ** fraction

    if config.quality is not None:
        return config.replace(quality=config.quality * fraction)
    return config.replace(
        sparsity=None if config.sparsity is None else part(config.sparsity),
        per_layer={k: part(v) for k, v in config.per_layer.items()},
    )


def iterative_prune(
    model: nn.Module,
    train: Any,
    config: Magnitude,
    *,
    rounds: int = 3,
    schedule: str = "geometric",
    train_config: TrainConfig | None = None,
    val: Any = None,
    callbacks: Sequence[Callback] = (),
    verbose: bool = False,
    device: str | torch.device | None = None,
) -> list[dict[str, Any]]:
    """Prune to ``config`` over ``rounds`` rounds, retraining after each (Han et al. 2015).

    Args:
        model: the network, pruned in place (masks stay on; see :func:`squeezer.surgery.bake_`).
        train: training data, as for :func:`squeezer.fit`.
        config: the final pruning targets.
        rounds: number of prune-retrain rounds.
        schedule: how the sparsity rises over the rounds (see :func:`scaled`).
        train_config: the retraining run of each round.
        val: evaluated after every epoch.
        callbacks: passed to every retraining run.
        verbose: print a line per epoch.
        device: where to retrain (default: where the model is); the model stays there.

    Returns:
        One dict per round: the sparsities reached and the retraining history.
    """
    if rounds < 1:
        raise ConfigError("rounds must be >= 1")
    out = []
    for r in range(1, rounds + 1):
        target = scaled(config, r / rounds, schedule)
        sparsity = prune_(model, target)
        result = fit(
            model, train, train_config, val=val, callbacks=callbacks, verbose=verbose,
            device=device,
        )  # fmt: skip
        out.append({"round": r, "sparsity": sparsity, "history": result.history})
    return out


def agp_sparsity(initial: float, final: float, progress: float) -> float:
    """Zhu & Gupta's cubic schedule at ``progress`` in [0, 1]."""
    p = min(max(progress, 0.0), 1.0)
    return final + (initial - final) * (1.0 - p) ** 3


class GradualPruning(Callback):
    """Automated gradual pruning (AGP) as a training callback.

    Args:
        config: the final targets (``sparsity`` and/or ``per_layer``; not ``quality``).
        start_step: optimizer step of the first pruning.
        end_step: step at which the final sparsity is reached.
        frequency: prune every this many steps in between.
        initial_sparsity: s_i, the sparsity at ``start_step``.
    """

    def __init__(
        self,
        config: Magnitude,
        start_step: int,
        end_step: int,
        frequency: int = 100,
        initial_sparsity: float = 0.0,
    ) -> None:
        if config.quality is not None:
            raise ConfigError("GradualPruning needs target sparsities, not quality")
        if end_step <= start_step or frequency < 1:
            raise ConfigError("GradualPruning needs end_step > start_step and frequency >= 1")
        self.config, self.start, self.end = config, start_step, end_step
        self.frequency, self.initial = frequency, initial_sparsity

    def targets_at(self, step: int) -> Magnitude:
        progress = (step - self.start) / (self.end - self.start)

        def at(final: float) -> float:
            return agp_sparsity(min(self.initial, final), final, progress)

        c = self.config
        return c.replace(
            sparsity=None if c.sparsity is None else at(c.sparsity),
            per_layer={k: at(v) for k, v in c.per_layer.items()},
        )

    def on_fit_start(self, state: TrainState) -> None:
        # Masks registered here keep the same Parameter objects, so the optimizer is unaffected.
        prune_(state.model, self.targets_at(min(max(state.step, self.start), self.end)))

    def on_batch_end(self, state: TrainState) -> None:
        t = state.step
        if self.start <= t <= self.end and (
            (t - self.start) % self.frequency == 0 or t == self.end
        ):
            prune_(state.model, self.targets_at(t))
