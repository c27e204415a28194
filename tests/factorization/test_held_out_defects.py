"""Regression tests for defects found by running factorize_ on models nobody here wrote."""

from __future__ import annotations

import copy

import torch
from threadpoolctl import threadpool_info
from torch import nn

import squeezer as sq
from squeezer.factorization import SVD, Tucker, factorize_


def test_flops_are_compared_on_one_example_whatever_the_batch() -> None:
    # A 1x1 conv at half Tucker rank costs 16*8 + 8*8 + 8*16 = 320 MACs per pixel against
    # 256: more. Counting the layer on a batch of 2 but its block on one example made it look
    # cheaper and convert.
    model = nn.Sequential(nn.Conv2d(16, 16, 1), nn.ReLU())
    report = factorize_(model, Tucker(rank=0.5), torch.randn(2, 16, 8, 8))
    (row,) = report.layers
    assert not row.converted and "would not reduce FLOPs" in row.reason
    assert isinstance(model[0], nn.Conv2d)


class ReadsStride(nn.Module):
    """Like Hugging Face's MobileNetV2: the forward reads the conv's geometry."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(8, 32, 3, padding=1)
        self.other = nn.Conv2d(32, 32, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.conv.stride[0] > 1 or self.conv.weight.dtype != x.dtype:
            x = x[:, :, ::2, ::2]
        return self.other(torch.relu(self.conv(x)))


class ReadsBias(ReadsStride):
    """A forward reading what no factor block has: the conv's bias."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.other(torch.relu(self.conv(x) + 0 * self.conv.bias.view(1, -1, 1, 1)))


def test_factor_blocks_keep_the_geometry_models_read(tmp_path) -> None:
    torch.manual_seed(0)
    model = ReadsStride().eval()
    x = torch.randn(1, 8, 12, 12)
    report = factorize_(model, Tucker(rank=0.25), x)
    assert [r.name for r in report.converted] == ["conv", "other"]
    assert isinstance(model.conv, sq.layers.FactorizedConv2d) and model.conv.stride == (1, 1)
    loaded = sq.load(sq.save(model, tmp_path / "m.sqz"), model=ReadsStride())
    assert loaded.conv.kernel_size == (3, 3)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_a_layer_the_model_reads_is_put_back_and_reported() -> None:
    torch.manual_seed(0)
    model = ReadsBias().eval()
    x = torch.randn(1, 8, 12, 12)
    report = factorize_(model, Tucker(rank=0.25), x)
    rows = {r.name: r for r in report.layers}
    assert not rows["conv"].converted and "does not run" in rows["conv"].reason
    assert isinstance(model.conv, nn.Conv2d)
    assert rows["other"].converted and isinstance(model.other, nn.Sequential)
    with torch.no_grad():
        assert model(x).shape == (1, 32, 12, 12)  # the model still runs


class MyLinear(nn.Linear):
    """A library's own subclass of nn.Linear."""


def test_subclasses_of_linear_are_factorized() -> None:
    model = nn.Sequential(MyLinear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    report = factorize_(model, SVD(rank=8), torch.randn(1, 64))
    assert [r.name for r in report.converted] == ["0", "2"]


class _RecordingSVD(SVD):
    """SVD that notes the BLAS thread limits in force while it converts."""

    seen: list = []  # noqa: RUF012 - a test probe

    def convert(self, module, spec):
        _RecordingSVD.seen.append([p["num_threads"] for p in threadpool_info()])
        return super().convert(module, spec)


def test_numpy_blas_follows_torch_thread_setting() -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _RecordingSVD.seen.clear()
        factorize_(nn.Sequential(nn.Linear(32, 32)), _RecordingSVD(rank=4), torch.randn(1, 32))
    finally:
        torch.set_num_threads(before)
    assert _RecordingSVD.seen and all(n == 1 for n in _RecordingSVD.seen[0])


def test_a_magnitude_pruned_model_survives_weight_sharing_of_a_copy() -> None:
    torch.manual_seed(0)
    model = sq.models.create("lenet300")
    sq.prune_(model, sq.pruning.Magnitude(sparsity=0.8))
    twin = copy.deepcopy(model)
    sq.quantize_(twin, sq.quantization.KMeansSharing(fc_bits=3))
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        model(x)  # remove_parametrizations on the copy used to break the original
    again = copy.deepcopy(model)  # and every later copy of it
    sq.quantize_(again, sq.quantization.KMeansSharing(fc_bits=3))
    with torch.no_grad():
        assert torch.equal(again(x), twin(x))
