"""Dynamic networks and other acceleration (family Y): fast convolution algorithms, stochastic
depth, early exits (the mixture-of-experts layer is :class:`squeezer.layers.MixtureOfExperts`).

    sq.convert_(model, sq.dynamic.Winograd())   # 3x3 stride-1 convs by F(2x2, 3x3)
    sq.convert_(model, sq.dynamic.FFTConv())    # convs in the Fourier domain
    sq.convert_(model, sq.dynamic.StochasticDepth(final_survival=0.5))  # residual nets
    net = sq.dynamic.early_exits(model, ["layers.0", "layers.1"], x, threshold=0.9)
    net = sq.dynamic.block_drop(model, example_inputs=x)   # per-input block skipping
    sq.dynamic.train_policy(net, train)
"""

from __future__ import annotations

from squeezer.dynamic.block_drop import (
    BlockDropNet,
    SkippableBlock,
    block_drop,
    default_policy,
    train_policy,
)
from squeezer.dynamic.early_exit import (
    EarlyExitNet,
    ExitHead,
    ExitLoss,
    early_exits,
    exit_costs,
    expected_flops,
)
from squeezer.dynamic.fastconv import FFTConv, Winograd
from squeezer.dynamic.stochastic_depth import StochasticDepth as StochasticDepthLayer
from squeezer.dynamic.stochastic_depth import StochasticDepthConfig as StochasticDepth

__all__ = [
    "BlockDropNet",
    "EarlyExitNet",
    "ExitHead",
    "ExitLoss",
    "FFTConv",
    "SkippableBlock",
    "StochasticDepth",
    "StochasticDepthLayer",
    "Winograd",
    "block_drop",
    "default_policy",
    "early_exits",
    "exit_costs",
    "expected_flops",
    "train_policy",
]
