"""LCNN (lookup-based convolution): the dictionary product plus sparse lookups equals the
dense convolution it describes, OMP finds exact sparse codes, the layer trains, saves
exactly, reports its FLOPs, and refuses what it cannot convert."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import squeezer as sq
from squeezer.errors import ConfigError
from squeezer.factorization import LCNN
from squeezer.layers import LookupConv2d, lookup_flops, omp


def test_lookup_forward_equals_the_dense_convolution_it_describes() -> None:
    torch.manual_seed(0)
    layer = LookupConv2d(6, 5, 3, stride=2, padding=1, dictionary_size=4, lookups=2)
    with torch.no_grad():
        layer.coefficients.normal_()
        layer.mask.copy_(torch.rand_like(layer.coefficients) < 0.5)
        layer.bias.normal_()
    x = torch.randn(2, 6, 9, 9)
    dense = F.conv2d(x, layer.weight, layer.bias, stride=2, padding=1)
    assert torch.allclose(layer(x), dense, atol=1e-5)


def test_omp_recovers_exact_sparse_codes() -> None:
    torch.manual_seed(0)
    atoms = torch.randn(10, 16)
    atoms = atoms / atoms.norm(dim=1, keepdim=True)
    true = torch.zeros(30, 10)
    for i in range(30):
        idx = torch.randperm(10)[:2]
        true[i, idx] = torch.randn(2).abs() + 0.5
    x = true @ atoms
    codes = omp(x, atoms, 2)
    assert int((codes != 0).sum(1).max()) <= 2
    assert torch.allclose(codes @ atoms, x, atol=1e-4)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc = nn.Linear(32 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = F.max_pool2d(torch.relu(self.conv2(x)), 2)
        return self.fc(x.flatten(1))


def test_lcnn_converts_trains_and_saves(tmp_path) -> None:
    torch.manual_seed(0)
    model = Net()
    x = torch.randn(8, 1, 16, 16)
    report = sq.factorize_(model, LCNN(rank=8, lookups=2), (x[:1],))
    assert isinstance(model.conv2, LookupConv2d)
    assert not isinstance(model.conv1, LookupConv2d)  # one input channel: nothing to share
    rows = {r["name"]: r for r in report.to_dict()["layers"]}
    assert rows["conv2"]["converted"] and rows["conv2"]["ranks"] == [8]
    layer = model.conv2
    assert int(layer.mask.sum(1).max()) <= 2  # at most 2 lookups per filter position
    assert layer.dictionary.shape == (8, 16)
    dictionary = layer.dictionary.detach().clone()
    coefficients = layer.coefficients.detach().clone()
    y = torch.randint(0, 10, (8,))
    sq.fit(model, [(x, y)], sq.TrainConfig(epochs=3, lr=0.05), progress=False)
    assert not torch.equal(layer.dictionary.detach(), dictionary)
    moved = layer.coefficients.detach()
    assert not torch.equal(moved, coefficients)
    assert bool((moved[~layer.mask] == 0).all())  # the sparsity pattern holds
    path = tmp_path / "lcnn.sqz"
    sq.save(model, path)
    back = sq.load(path, Net())
    assert isinstance(back.conv2, LookupConv2d)
    assert torch.equal(back(x), model.eval()(x))


def test_flops_count_only_the_lookups() -> None:
    layer = LookupConv2d(16, 32, 3, padding=1, dictionary_size=8, lookups=1)
    with torch.no_grad():
        layer.mask[:, 0] = True  # one lookup per filter position
    flops = lookup_flops(layer, 10, 10)
    assert flops["dictionary"] == 8 * 16 * 100
    assert flops["lookups"] == 32 * 9 * 100
    assert flops["dense_conv"] == 32 * 16 * 9 * 100
    assert flops["total"] < flops["dense_conv"] / 4


def test_bad_input() -> None:
    with pytest.raises(ConfigError, match="lookups"):
        LCNN(lookups=0)
    recipe = sq.pipeline.Recipe.from_dict(
        {"name": "l", "stages": [{"factorize": {"method": "lcnn", "rank": 4, "lookups": 1}}]}
    )
    assert isinstance(recipe.stages[0].config, LCNN)
