"""Training hyper-parameters as a frozen config, and the learning-rate schedules."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from squeezer.config import Config, check

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "step", "linear")


@dataclass(frozen=True)
class TrainConfig(Config):
    """How :func:`squeezer.fit` trains.

    Attributes:
        epochs: passes over the training data.
        batch_size: images per step (when ``fit`` builds the loader itself).
        optimizer: ``"sgd"`` (with momentum), ``"adam"`` or ``"adamw"``.
        lr: peak learning rate.
        momentum: SGD momentum.
        nesterov: Nesterov momentum for SGD.
        weight_decay: L2 penalty (decoupled for AdamW).
        schedule: ``"constant"``, ``"cosine"`` (to zero), ``"step"`` (times ``gamma`` at each
            of ``milestones``) or ``"linear"`` (to zero). Evaluated every step.
        milestones: epochs at which the ``"step"`` schedule multiplies by ``gamma``; empty
            means at 50% and 75% of training.
        gamma: the step schedule's factor.
        warmup_epochs: linear warm-up from zero over this many (fractional) epochs.
        label_smoothing: cross-entropy label smoothing.
        grad_clip: clip the gradient norm to this value (None: no clipping).
        seed: makes a run repeatable: initial shuffling, augmentation, dropout.
        sync_bn: under ``torchrun``, BatchNorm statistics over the whole global batch
            (``SyncBatchNorm``, CUDA) instead of each process's slice.
    """

    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    grad_clip: float | None = None
    seed: int = 0
    sync_bn: bool = False

    def validate(self) -> None:
        check(self.epochs >= 0, f"epochs must be >= 0, got {self.epochs}")
        check(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        check(
            self.optimizer in OPTIMIZERS,
            f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}",
        )
        check(
            self.schedule in SCHEDULES,
            f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}",
        )
        check(self.lr > 0, f"lr must be > 0, got {self.lr}")
        check(0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}")
        check(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        check(0 < self.gamma <= 1, f"gamma must be in (0, 1], got {self.gamma}")
        check(self.warmup_epochs >= 0, "warmup_epochs must be >= 0")
        check(0 <= self.label_smoothing < 1, "label_smoothing must be in [0, 1)")
        check(self.grad_clip is None or self.grad_clip > 0, "grad_clip must be > 0")


def param_groups(config: TrainConfig, params: list[nn.Parameter]) -> list[dict]:
    """``params`` split by what a method asked of them: a parameter with the attribute
    ``_sq_lr_scale`` trains at that multiple of the learning rate, one with ``_sq_no_decay``
    set without weight decay (a log-variance or a prior's mixing weights must not be pulled
    to zero)."""
    groups: dict[tuple[float, bool], list[nn.Parameter]] = {}
    for p in params:
        key = (float(getattr(p, "_sq_lr_scale", 1.0)), bool(getattr(p, "_sq_no_decay", False)))
        groups.setdefault(key, []).append(p)
    return [
        {
            "params": ps,
            "lr": config.lr * scale,
            "lr_scale": scale,
            "weight_decay": 0.0 if no_decay else config.weight_decay,
        }
        for (scale, no_decay), ps in groups.items()
    ]


def make_optimizer(config: TrainConfig, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    """The optimizer ``config`` names, over ``params`` (see :func:`param_groups`)."""
    groups = param_groups(config, params)
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            groups,
            lr=config.lr,
            momentum=config.momentum,
            nesterov=config.nesterov and config.momentum > 0,
            weight_decay=config.weight_decay,
        )
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)


def lr_at(config: TrainConfig, progress: float) -> float:
    """The learning rate after ``progress`` epochs (a float: 2.5 is half-way through epoch 3).

    A pure function of the position in training rather than a stateful scheduler, so a run
    resumed from a checkpoint follows exactly the schedule of an uninterrupted one.
    """
    total = max(config.epochs, 1e-12)
    if config.warmup_epochs > 0 and progress < config.warmup_epochs:
        return config.lr * progress / config.warmup_epochs
    if config.schedule == "constant":
        return config.lr
    start = min(config.warmup_epochs, total)
    t = min(max((progress - start) / max(total - start, 1e-12), 0.0), 1.0)
    if config.schedule == "cosine":
        return config.lr * 0.5 * (1.0 + math.cos(math.pi * t))
    if config.schedule == "linear":
        return config.lr * (1.0 - t)
    milestones = config.milestones or (round(0.5 * total), round(0.75 * total))
    passed = sum(progress >= m for m in milestones)
    return config.lr * config.gamma**passed
