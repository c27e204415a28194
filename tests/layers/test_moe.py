"""Sparsely-gated mixture of experts: top-k routing and its output against the dense
mixture, the smooth load estimator against Monte Carlo, the balancing term reaching the
gates through sq.fit, FLOPs proportional to k, saving, and bad input."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import squeezer as sq
from squeezer.analysis import count_flops
from squeezer.layers import MixtureOfExperts
from squeezer.layers.moe import cv_squared, load_probability


def test_each_example_goes_to_k_experts_and_gets_their_weighted_outputs():
    torch.manual_seed(0)
    moe = MixtureOfExperts(6, 3, experts=5, k=2, hidden=7).eval()
    nn.init.normal_(moe.w_gate)
    x = torch.randn(40, 6)
    gates, aux = moe.gates(x)
    assert aux is None and ((gates > 0).sum(1) == 2).all()
    torch.testing.assert_close(gates.sum(1), torch.ones(40))
    dense = sum(gates[:, e : e + 1] * moe.experts[e](x) for e in range(5))
    torch.testing.assert_close(moe(x), dense)
    assert int(moe.last_load.sum()) == 80
    assert moe(x.view(4, 10, 6)).shape == (4, 10, 3)  # any leading dimensions


def test_the_load_estimator_is_the_probability_of_staying_in_the_top_k():
    torch.manual_seed(0)
    clean = torch.randn(1, 6)
    std = torch.rand(1, 6) + 0.5
    noisy = clean + torch.randn(1, 6) * std
    p = load_probability(clean, noisy, std, k=2)
    for i in range(6):  # redraw expert i's noise, the others fixed
        draws = clean[0, i] + torch.randn(200_000) * std[0, i]
        others = torch.cat([noisy[0, :i], noisy[0, i + 1 :]])
        kth = others.topk(2).values[1]  # i is in the top 2 iff it beats the 2nd of the others
        assert float((draws > kth).float().mean()) == pytest.approx(float(p[0, i]), abs=0.005)


def test_the_balancing_term_trains_the_gates_through_fit():
    torch.manual_seed(0)
    moe = MixtureOfExperts(8, 4, experts=4, k=1, hidden=8)
    model = nn.Sequential(moe)
    x, y = torch.randn(64, 8), torch.randint(0, 4, (64,))
    model.train()
    model(x)
    assert moe.aux_loss is not None and moe.aux_loss.requires_grad
    moe.aux_loss.backward()
    assert moe.w_noise.grad is not None and moe.w_noise.grad.abs().sum() > 0  # via the load
    moe.zero_grad()
    seen = []
    original = sq.train.penalty.auxiliary_loss

    def spy(m):
        out = original(m)
        seen.append(out)
        return out

    sq.train.loop.auxiliary_loss = spy
    try:
        sq.fit(model, [(x, y)], epochs=1, lr=0.1, verbose=False)
    finally:
        sq.train.loop.auxiliary_loss = original
    assert len(seen) == 1 and seen[0] is not None and moe.aux_loss is None  # taken, once


def test_cv_squared_is_zero_when_balanced():
    assert float(cv_squared(torch.full((5,), 3.0))) == 0.0
    assert float(cv_squared(torch.tensor([0.0, 4.0]))) == pytest.approx(2.0)


def test_flops_grow_with_k_not_with_the_number_of_experts(tmp_path):
    torch.manual_seed(0)
    x = torch.randn(64, 16)
    one = MixtureOfExperts(16, 16, experts=8, k=1, hidden=32).eval()
    two = MixtureOfExperts(16, 16, experts=8, k=2, hidden=32).eval()
    expert = 2 * 64 * (16 * 32 + 32 * 16)  # one expert on every example
    gate = 2 * 64 * 16 * 8
    assert count_flops(one, x)[0] == expert + gate
    assert count_flops(two, x)[0] == 2 * expert + gate
    model = nn.Sequential(two)
    sq.save(model, tmp_path / "moe.sqz")
    fresh = nn.Sequential(MixtureOfExperts(16, 16, experts=8, k=2, hidden=32))
    torch.testing.assert_close(sq.load(tmp_path / "moe.sqz", model=fresh).eval()(x), model(x))


def test_bad_input():
    with pytest.raises(ValueError, match=r"k must be in \[1, experts=4\]"):
        MixtureOfExperts(4, 4, experts=4, k=5)
