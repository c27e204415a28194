"""Training and evaluation: ``fit``, ``evaluate``, callbacks and checkpoints."""

from __future__ import annotations

from squeezer.train.batchnorm import recalibrate_bn_
from squeezer.train.callbacks import Callback, EarlyStop, TrainState
from squeezer.train.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from squeezer.train.config import TrainConfig, lr_at, make_optimizer
from squeezer.train.loop import FitResult, evaluate, fit
from squeezer.train.penalty import (
    PenaltyWarmup,
    TrainedParametrization,
    finish_,
    model_penalty,
    trained_parametrizations,
)

__all__ = [
    "Callback",
    "EarlyStop",
    "FitResult",
    "PenaltyWarmup",
    "TrainConfig",
    "TrainState",
    "TrainedParametrization",
    "evaluate",
    "finish_",
    "fit",
    "load_checkpoint",
    "lr_at",
    "make_optimizer",
    "model_penalty",
    "read_checkpoint",
    "recalibrate_bn_",
    "save_checkpoint",
    "trained_parametrizations",
]
