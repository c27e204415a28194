"""ThiNet and LASSO channel selection with least-squares rescaling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from squeezer.pruning import (
    lasso_order,
    prune_channels,
    prune_with_reconstruction,
    thinet_order,
)


def test_thinet_greedy_order() -> None:
    rng = np.random.default_rng(0)
    base = rng.standard_normal((500, 3))
    x = base * np.array([5.0, 1.0, 0.1])
    assert thinet_order(x) == [2, 1, 0]
    # two columns that cancel each other are removed together before a small lone one
    a = rng.standard_normal(500)
    pair = np.stack([a, -a, 0.5 * rng.standard_normal(500), 3 * a + 1], axis=1)
    order = thinet_order(pair)
    assert order[0] == 2 and set(order[1:3]) == {0, 1}


def test_lasso_order_drops_the_irrelevant_column_first() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((400, 3))
    y = x[:, 0] + 0.5 * x[:, 1]
    assert lasso_order(x, y)[0] == 2


class Chain(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(x))).mean((2, 3))


@pytest.mark.parametrize("method", ["thinet", "lasso"])
def test_a_duplicate_channel_is_removed_and_compensated_exactly(method: str) -> None:
    torch.manual_seed(0)
    model = Chain()
    with torch.no_grad():
        model.a.weight[3] = model.a.weight[0] * 0.1  # channels 0 and 3: same shape, small
        model.a.weight[0] = model.a.weight[3]
        model.a.bias[0] = model.a.bias[3] = 0.0
        model.b.weight[:, 3] = model.b.weight[:, 0]
    data = [(torch.randn(16, 1, 8, 8), torch.zeros(16, dtype=torch.long)) for _ in range(2)]
    pruned = prune_with_reconstruction(
        model, torch.randn(1, 1, 8, 8), data, ratio=0.25, method=method, samples=2000
    )
    assert pruned.a.out_channels == 3 and pruned.b.in_channels == 3
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), model(x), rtol=1e-4, atol=1e-5)


class TwoConsumers(nn.Module):
    """One producer read by two convs whose outputs are added: a residual-style group."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 3, 3, padding=1)
        self.c = nn.Conv2d(4, 3, 1)

    def forward(self, x):
        h = torch.relu(self.a(x))
        return self.b(h) + self.c(h)


@pytest.mark.parametrize("method", ["thinet", "lasso"])
def test_groups_with_several_consumers_are_chosen_by_reconstruction(method):
    torch.manual_seed(0)
    model = TwoConsumers().eval()
    with torch.no_grad():
        model.a.weight[0] *= 20  # the largest filter: L1 keeps it...
        model.a.bias[0] = 1.0
        model.b.weight[:, 0] = 0  # ...but neither consumer reads it
        model.c.weight[:, 0] = 0
    big = float(model.a.weight.detach()[0].abs().amax())
    x = torch.randn(1, 3, 8, 8)
    data = [(torch.randn(16, 3, 8, 8), torch.zeros(16)) for _ in range(2)]
    l1 = prune_channels(model, x, ratio=0.25, criterion="l1")
    assert l1.a.out_channels == 3 and float(l1.a.weight.detach().abs().amax()) == big  # kept by L1
    pruned = prune_with_reconstruction(model, x, data, ratio=0.25, method=method)
    assert pruned.a.out_channels == 3
    assert float(pruned.a.weight.detach().abs().amax()) < big / 5  # the unread channel went
    with torch.no_grad():
        xs = data[0][0]
        err = (pruned(xs) - model(xs)).norm() / model(xs).norm()
    assert err < 0.9  # both consumers refit on what is left
