"""Data-free merging of similar fc neurons (Srinivas & Babu 2015)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

import squeezer as sq
from squeezer.pruning import merge_neurons, merge_order


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(4, 6)
        self.fc2 = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


def test_identical_neurons_merge_exactly() -> None:
    torch.manual_seed(0)
    model = MLP()
    with torch.no_grad():
        model.fc1.weight[4] = model.fc1.weight[1]
        model.fc1.bias[4] = model.fc1.bias[1]
    merged = merge_neurons(model, torch.randn(1, 4), ratio=1 / 6)
    assert merged.fc1.out_features == 5 and merged.fc2.in_features == 5
    x = torch.randn(10, 4)
    torch.testing.assert_close(merged(x), model(x))


def test_merge_order_prefers_close_twins_with_small_outgoing_weights() -> None:
    incoming = np.array([[1.0, 0.0], [1.0, 0.01], [5.0, 5.0], [-3.0, 2.0]])
    outgoing = np.array([[1.0, 1.0, 1.0, 1.0]])
    removed, out = merge_order(incoming, outgoing, 1)
    assert removed[0] in (0, 1)
    assert out[0, 1 - removed[0]] == 2.0  # the twin carries both outgoing weights


def test_lenet300_hidden_layers_shrink_and_still_run() -> None:
    model = sq.models.create("lenet300")
    merged = merge_neurons(model, torch.randn(1, 1, 28, 28), ratio=0.5)
    assert (merged.fc1.out_features, merged.fc2.out_features) == (150, 50)
    assert merged(torch.randn(2, 1, 28, 28)).shape == (2, 10)
