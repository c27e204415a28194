"""Structured-matrix layers equal the explicit matrices they stand for, built independently."""

import math

import numpy as np
import pytest
import scipy.fft
import scipy.linalg
import torch
from torch import nn

from squeezer.layers import (
    ACDCLinear,
    CirculantLinear,
    FastfoodLinear,
    LDRLinear,
    build_module,
    dct,
    fwht,
    idct,
    module_spec,
)

SHAPES = [(16, 16), (20, 12), (12, 40)]


def _check(layer, matrix):
    x = torch.randn(5, layer.in_features, dtype=torch.float64)
    expected = x @ torch.as_tensor(matrix).T + layer.bias.detach()
    torch.testing.assert_close(layer(x).detach(), expected)


def _f_circulant(v, f):
    """Z_f(v): first column v, entries above the diagonal wrapped around times f."""
    n = len(v)
    z = np.empty((n, n))
    for i in range(n):
        for j in range(n):
            z[i, j] = v[i - j] if i >= j else f * v[n + i - j]
    return z


def test_transforms_match_scipy():
    x = torch.randn(3, 12, dtype=torch.float64)
    np.testing.assert_allclose(dct(x).numpy(), scipy.fft.dct(x.numpy(), norm="ortho"), atol=1e-12)
    np.testing.assert_allclose(idct(x).numpy(), scipy.fft.idct(x.numpy(), norm="ortho"), atol=1e-12)
    h = scipy.linalg.hadamard(16) / 4.0
    np.testing.assert_allclose(fwht(torch.eye(16, dtype=torch.float64)).numpy(), h, atol=1e-12)
    with pytest.raises(ValueError, match="power of two"):
        fwht(torch.zeros(12))


@pytest.mark.parametrize(("inp", "out"), SHAPES)
def test_circulant_equals_explicit_matrix(inp, out):
    torch.manual_seed(0)
    layer = CirculantLinear(inp, out).double()
    c, d = layer.c.detach().numpy(), layer.signs.numpy()
    full = _f_circulant(c, 1.0) @ np.diag(d)
    _check(layer, full[:out, :inp])


@pytest.mark.parametrize(("inp", "out"), SHAPES)
def test_fastfood_equals_explicit_matrix(inp, out):
    torch.manual_seed(0)
    layer = FastfoodLinear(inp, out).double()
    n = layer.n
    h = scipy.linalg.hadamard(n) / math.sqrt(n)
    blocks = []
    for b in range(layer.blocks):
        perm = np.eye(n)[layer.perm[b].numpy()]  # (Pi v)_k = v[perm[k]]
        s, g, bb = (p[b].detach().numpy() for p in (layer.S, layer.G, layer.B))
        blocks.append(np.diag(s) @ h @ np.diag(g) @ perm @ h @ np.diag(bb))
    full = np.vstack(blocks)
    _check(layer, full[:out, :inp])


@pytest.mark.parametrize(("inp", "out"), SHAPES)
def test_ldr_equals_explicit_matrix(inp, out):
    torch.manual_seed(0)
    layer = LDRLinear(inp, out, rank=3).double()
    g, h = layer.g.detach().numpy(), layer.h.detach().numpy()
    full = sum(_f_circulant(g[i], 1.0) @ _f_circulant(h[i], -1.0) for i in range(3))
    _check(layer, full[:out, :inp])


@pytest.mark.parametrize(("inp", "out"), SHAPES)
def test_acdc_equals_explicit_matrix(inp, out):
    torch.manual_seed(0)
    layer = ACDCLinear(inp, out, depth=3).double()
    n = layer.n
    c = scipy.fft.dct(np.eye(n), norm="ortho", axis=0)  # C v == dct(v)
    full = np.eye(n)
    for i in range(3):
        a, d = layer.A[i].detach().numpy(), layer.D[i].detach().numpy()
        step = np.diag(a) @ c @ np.diag(d) @ c.T
        if i:
            step = step @ np.eye(n)[layer.perm[i].numpy()]
        full = step @ full
    _check(layer, full[:out, :inp])


def test_toeplitz_matrix_has_displacement_rank_two_and_is_fit_exactly():
    rng = np.random.default_rng(0)
    t = scipy.linalg.toeplitz(rng.standard_normal(32), rng.standard_normal(32))
    lin = nn.Linear(32, 32).double()
    lin.weight.data = torch.as_tensor(t)
    assert LDRLinear.from_linear(lin, rank=2).relative_error(lin.weight.detach()) < 1e-3


def test_circulant_fit_is_exact_for_a_circulant_and_least_squares_otherwise():
    torch.manual_seed(0)
    src = CirculantLinear(24, 24).double()
    lin = nn.Linear(24, 24).double()
    lin.weight.data = src.dense().detach()
    fit = CirculantLinear.from_linear(lin)
    assert fit.relative_error(lin.weight.detach()) < 1e-10
    torch.testing.assert_close(fit.bias.detach(), lin.bias.detach())
    # on a random matrix, no other c does better (perturbing the optimum raises the error)
    lin.weight.data = torch.randn(24, 24, dtype=torch.float64)
    fit = CirculantLinear.from_linear(lin)
    best = fit.relative_error(lin.weight.detach())
    with torch.no_grad():
        fit.c.add_(1e-3 * torch.randn(24, dtype=torch.float64))
    assert fit.relative_error(lin.weight.detach()) > best


def test_fastfood_fit_recovers_a_planted_fastfood_matrix():
    torch.manual_seed(0)
    src = FastfoodLinear(32, 40, seed=5).double()
    lin = nn.Linear(32, 40).double()
    lin.weight.data = src.dense().detach()
    fit = FastfoodLinear.from_linear(lin, seed=5)
    assert fit.relative_error(lin.weight.detach()) < 1e-4


@pytest.mark.parametrize("cls", [CirculantLinear, FastfoodLinear, LDRLinear, ACDCLinear])
def test_layers_train_and_round_trip_through_specs(cls):
    torch.manual_seed(0)
    layer = cls(10, 6)
    x, y = torch.randn(64, 10), torch.randn(64, 6)
    opt = torch.optim.Adam(layer.parameters(), lr=0.05)
    first = None
    for _ in range(30):
        opt.zero_grad()
        loss = nn.functional.mse_loss(layer(x), y)
        first = first if first is not None else loss.item()
        loss.backward()
        opt.step()
    assert loss.item() < first
    rebuilt = build_module(module_spec(layer))
    assert type(rebuilt) is cls
    rebuilt.load_state_dict(layer.state_dict())
    torch.testing.assert_close(rebuilt(x), layer(x))
