"""Trained k-means weight sharing: clustering, the centroid gradient, fixed assignments."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import squeezer as sq
from squeezer.errors import ConfigError, ModelError
from squeezer.pruning import Magnitude, prune_
from squeezer.quantization import KMeansSharing, codebook_of, initial_centroids, quantize_


def test_centroid_update_matches_hand_computation() -> None:
    layer = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 2.0], [1.2, 0.0]]))
    quantize_(layer, KMeansSharing(bits=2))  # 3 centroids for 3 distinct non-zeros
    codebook = codebook_of(layer)
    assert codebook is not None
    before = codebook.detach().clone()
    torch.testing.assert_close(before, torch.tensor([1.0, 1.2, 2.0]))
    x = torch.tensor([[3.0, -1.0]])
    g_out = torch.tensor([[0.5, 2.0]])
    layer(x).backward(g_out)
    # dL/dW = g_out^T x = [[1.5, -0.5], [6.0, -2.0]]; W = [[c1, c3], [c2, 0]]
    expected_grad = torch.tensor([1.5, 6.0, -0.5])
    torch.testing.assert_close(codebook.grad, expected_grad)
    torch.optim.SGD([codebook], lr=0.1).step()
    torch.testing.assert_close(codebook.detach(), before - 0.1 * expected_grad)
    w = layer.weight.detach()
    assert w[1, 1] == 0  # the pruned weight stays zero
    torch.testing.assert_close(w[0, 0], before[0] - 0.15)


def test_quantize_limits_values_and_keeps_zeros() -> None:
    model = sq.models.create("lenet5")
    prune_(model, Magnitude(sparsity=0.7))
    zeros = {n: getattr(model, n).weight.detach() == 0 for n in ("conv1", "fc1")}
    report = quantize_(model, KMeansSharing(conv_bits=4, fc_bits=3))
    assert report["conv1"]["bits"] == 4 and report["fc1"]["bits"] == 3
    for name, bits in (("conv1", 4), ("fc1", 3)):
        w = getattr(model, name).weight.detach()
        assert torch.equal(w == 0, zeros[name])
        assert w[w != 0].unique().numel() <= 2**bits - 1


def test_per_layer_bits_override() -> None:
    model = sq.models.create("lenet300")
    report = quantize_(model, KMeansSharing(fc_bits=5, per_layer={"fc3": 2}))
    assert report["fc3"]["bits"] == 2 and report["fc1"]["bits"] == 5


@pytest.mark.parametrize("init", ["linear", "density", "random"])
def test_initializations(init: str) -> None:
    values = np.random.default_rng(0).standard_normal(1000)
    c = initial_centroids(values, 8, init)
    assert c.size == 8 and values.min() <= c.min() and c.max() <= values.max()
    if init == "linear":
        np.testing.assert_allclose(c, np.linspace(values.min(), values.max(), 8))
    model = sq.models.create("lenet300")
    quantize_(model, KMeansSharing(bits=3, init=init))
    assert model.fc2.weight.detach().unique().numel() <= 8


def test_fine_tuning_keeps_assignments_and_zeros() -> None:
    train, _ = sq.data.load("digits")
    model = sq.models.create("lenet300")
    prune_(model, Magnitude(sparsity=0.8))
    quantize_(model, KMeansSharing(fc_bits=4))
    idx_before = model.fc1.parametrizations.weight[0].indices.clone()
    w_before = model.fc1.weight.detach().clone()
    sq.fit(model, train.subset(256), epochs=1, batch_size=32, lr=0.01, weight_decay=0)
    w_after = model.fc1.weight.detach()
    assert torch.equal(model.fc1.parametrizations.weight[0].indices, idx_before)
    assert torch.equal(w_after == 0, w_before == 0)
    assert not torch.equal(w_after, w_before)  # the centroids did move
    # weights that shared a value before still share one
    for k in (1, 5, 9):
        assert w_after[idx_before == k].unique().numel() <= 1


def test_bias_sharing_is_opt_in_and_round_trips(tmp_path) -> None:
    model = sq.models.create("lenet300")
    quantize_(model, KMeansSharing(fc_bits=4))
    assert codebook_of(model.fc1, "bias") is None
    report = quantize_(model, KMeansSharing(fc_bits=4, bias_bits=3))
    assert report["fc1"]["bias_bits"] == 3
    assert codebook_of(model.fc1, "bias").numel() == 7
    assert model.fc1.bias.detach().unique().numel() <= 7
    path = sq.save(model, tmp_path / "m.sqz")
    loaded = sq.load(path)
    assert torch.equal(loaded.fc1.bias, model.fc1.bias.detach())
    reports = {r.name: r for r in sq.coding.read(path).reports}
    assert reports["fc1.bias"].encoding == "dense"
    assert reports["fc3.bias"].bytes <= 10 * 4  # 10 values: a codebook only where smaller


# ------------------------------------------------------------- Hessian-weighted k-means (S5)
def test_hutchinson_estimate_matches_the_exact_hessian_diagonal() -> None:
    from squeezer.quantization.kmeans import loss_curvature

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 3))
    x, y = torch.randn(32, 5), torch.randint(0, 3, (32,))
    batches = [(x, y)] * 600  # the same batch: the estimate converges to its diagonal
    estimate = loss_curvature(model, batches, "hessian", max_batches=600)["0.weight"]

    def loss(w: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(x @ w.t() + model[0].bias.detach(), y)

    exact = torch.autograd.functional.hessian(loss, model[0].weight.detach())
    diagonal = exact.reshape(15, 15).diagonal().reshape(3, 5)
    assert torch.allclose(estimate, diagonal, rtol=0.2, atol=2e-3)
    fisher = loss_curvature(model, [(x, y)], "fisher")["0.weight"]
    grad = torch.autograd.grad(loss(model[0].weight), model[0].weight)[0]
    assert torch.allclose(fisher, grad**2)


def test_important_weights_get_their_own_centroids() -> None:
    from squeezer.quantization.kmeans import share_weights

    torch.manual_seed(0)
    layer = nn.Linear(64, 16)
    w = layer.weight.detach().clone()
    importance = torch.full_like(w, 1e-6)
    important = torch.zeros_like(w, dtype=torch.bool)
    important[0, :3] = True
    importance[important] = 1.0
    share_weights(layer, 2, importance=importance)  # 3 centroids, 3 weights that matter
    weighted_error = (layer.weight.detach() - w)[important].abs().mean()
    plain = nn.Linear(64, 16)
    plain.weight.data.copy_(w)
    share_weights(plain, 2)
    plain_error = (plain.weight.detach() - w)[important].abs().mean()
    assert weighted_error < 0.1 * plain_error


def test_hessian_weighting_needs_labelled_data() -> None:
    with pytest.raises(ModelError, match="needs data"):
        sq.quantize_(nn.Sequential(nn.Linear(4, 2)), KMeansSharing(bits=2, weighting="hessian"))
    with pytest.raises(ConfigError, match="weighting"):
        KMeansSharing(weighting="exact")
