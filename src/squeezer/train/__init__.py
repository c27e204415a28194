"""Training and evaluation: ``fit``, ``evaluate``, callbacks and checkpoints."""

from __future__ import annotations

from squeezer.train.batchnorm import recalibrate_bn_
from squeezer.train.callbacks import Callback, EarlyStop, TrainState
from squeezer.train.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from squeezer.train.config import TrainConfig, lr_at, make_optimizer
from squeezer.train.loop import FitResult, evaluate, fit

__all__ = [
    "Callback",
    "EarlyStop",
    "FitResult",
    "TrainConfig",
    "TrainState",
    "evaluate",
    "fit",
    "load_checkpoint",
    "lr_at",
    "make_optimizer",
    "read_checkpoint",
    "recalibrate_bn_",
    "save_checkpoint",
]
