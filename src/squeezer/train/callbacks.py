"""Callbacks: how compression methods plug into the one training loop.

A pruning method keeps its masks by zeroing weights in ``on_batch_end``; a regularizer adds a
term in ``loss``; distillation replaces the loss with one that also looks at a teacher. The
loop calls the hooks in this order for every batch: ``on_batch_start``, forward, ``loss``,
backward, ``on_after_backward``, optimizer step, ``on_batch_end``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from squeezer.errors import ConfigError
from squeezer.train.config import TrainConfig


@dataclass
class TrainState:
    """What the loop knows at a hook; callbacks may read everything and set ``stop``."""

    model: nn.Module
    optimizer: Any
    config: TrainConfig
    epoch: int = 0  # the epoch in progress, counting from 0
    step: int = 0  # optimizer steps taken since the run began (resumed runs included)
    batch_index: int = 0
    batches_per_epoch: int = 0
    num_examples: int = 1  # per epoch; trained parametrizations' penalties are divided by it
    inputs: Tensor | None = None
    targets: Tensor | None = None
    outputs: Tensor | None = None
    loss: Tensor | None = None
    lr: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)  # of the last finished epoch
    history: list[dict[str, float]] = field(default_factory=list)
    stop: bool = False


class Callback:
    """Base class: override the hooks you need; every default does nothing."""

    def on_fit_start(self, state: TrainState) -> None:
        """Before the first epoch (also when resuming)."""

    def on_epoch_start(self, state: TrainState) -> None:
        """Before the first batch of ``state.epoch``."""

    def on_batch_start(self, state: TrainState) -> None:
        """Before the forward pass; ``state.inputs`` and ``state.targets`` are set."""

    def loss(self, state: TrainState, loss: Tensor) -> Tensor:
        """Return the loss to minimize, given the task loss (add regularizers here)."""
        return loss

    def on_after_backward(self, state: TrainState) -> None:
        """After ``backward``, before the optimizer step: gradients may be edited here."""

    def on_batch_end(self, state: TrainState) -> None:
        """After the optimizer step: re-impose constraints (masks, shared values) here."""

    def on_epoch_end(self, state: TrainState) -> None:
        """After the epoch's evaluation; ``state.metrics`` holds its numbers."""

    def on_fit_end(self, state: TrainState) -> None:
        """After the last epoch (or an early stop)."""


class EarlyStop(Callback):
    """Stop when a metric of ``state.metrics`` reaches a target (e.g. ``val_top1 >= 0.99``)."""

    def __init__(self, metric: str, target: float, mode: str = "max") -> None:
        if mode not in ("max", "min"):
            raise ConfigError("mode must be 'max' or 'min'")
        self.metric, self.target, self.mode = metric, target, mode

    def on_epoch_end(self, state: TrainState) -> None:
        value = state.metrics.get(self.metric)
        if value is None:
            return
        state.stop = value >= self.target if self.mode == "max" else value <= self.target
