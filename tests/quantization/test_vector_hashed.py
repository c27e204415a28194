"""Product and residual quantization (Gong 2014) and HashedNets (Chen 2015): what the layers
compute, that their codebooks or buckets train, exact .sqz storage at the expected size,
and bad input."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import squeezer as sq
from squeezer.coding import build, encode_model, parse
from squeezer.errors import ConfigError, ModelError
from squeezer.quantization import (
    HashedNets,
    HashedWeight,
    ProductQuantization,
    ResidualQuantization,
    VectorQuantizedWeight,
    kmeans_vectors,
)
from squeezer.quantization.hashed import hash_positions


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3)
        self.fc1 = nn.Linear(4 * 6 * 6, 64)
        self.fc2 = nn.Linear(64, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(torch.relu(self.conv(x)).flatten(1))))


def _roundtrip(model: nn.Module, x: torch.Tensor) -> tuple[bytes, nn.Module]:
    data = encode_model(model)
    back = build(parse(data), model=sq.surgery.baked_copy(Net()))
    assert torch.equal(back(x), model(x))
    return data, back


def test_kmeans_vectors_finds_separated_clusters() -> None:
    torch.manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [5.0, 5.0], [-5.0, 5.0]])
    x = torch.cat([c + 0.1 * torch.randn(50, 2) for c in centres])
    found, labels = kmeans_vectors(x, 3, seed=1)
    assert sorted(found.round().tolist()) == sorted(centres.tolist())
    assert len(set(labels[:50].tolist())) == 1 and len(set(labels.tolist())) == 3


def test_product_quantization_reconstructs_from_its_codebooks() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(8, 3)
    w = layer.weight.detach().clone()
    report = sq.quantize_(layer, ProductQuantization(subvector=2, bits=2, layers=("",)))
    p = layer.parametrizations.weight[0]
    assert isinstance(p, VectorQuantizedWeight)
    assert p.indices.shape == (1, 3, 4)  # one stage, 3 rows, 4 segments of 2
    books = layer.parametrizations.weight.original
    assert books.shape == (1, 4, 4, 2)  # a codebook of 4 codewords per segment
    assert torch.equal(layer.weight[1, 2:4], books[0, 1, p.indices[0, 1, 1]])
    assert report[""]["bits_per_weight"] == 1.0
    # 3 rows per segment, 4 codewords: every row gets its own codeword, nothing is lost
    assert torch.allclose(layer.weight, w)


def test_more_stages_and_more_bits_fit_better() -> None:
    torch.manual_seed(0)
    base = nn.Linear(64, 128)

    def error(config: ProductQuantization) -> float:
        layer = copy.deepcopy(base)
        return sq.quantize_(layer, config)[""]["relative_error"]

    one = error(ProductQuantization(subvector=4, bits=3, shared_codebook=True, layers=("",)))
    two = error(ResidualQuantization(subvector=4, bits=3, shared_codebook=True, layers=("",)))
    more_bits = error(ProductQuantization(subvector=4, bits=6, shared_codebook=True, layers=("",)))
    assert two < one and more_bits < one


def test_codebooks_train_and_the_file_is_exact_and_small() -> None:
    torch.manual_seed(0)
    model = Net()
    x = torch.randn(16, 2, 8, 8)
    y = torch.randint(0, 8, (16,))
    sq.quantize_(model, ProductQuantization(subvector=4, bits=4, layer_types=("Linear",)))
    books = model.fc1.parametrizations.weight.original
    before = books.detach().clone()
    sq.fit(model, [(x, y)], sq.TrainConfig(epochs=2, lr=0.05), progress=False)
    assert not torch.equal(books.detach(), before)  # the codewords moved
    data, _ = _roundtrip(model, x)
    entries = {t["name"]: t for t in parse(data).header["tensors"]}
    assert entries["fc1.weight"]["enc"] == "vq"
    # fc1: 36 segments x 16 codewords x 4 floats + 64 x 36 indices of at most 4 bits
    assert entries["fc1.weight"]["len"] <= 36 * 16 * 4 * 4 + 64 * 36 // 2 + 64


def test_residual_codes_are_stored_stage_by_stage() -> None:
    torch.manual_seed(0)
    model = Net()
    sq.quantize_(model, ResidualQuantization(subvector=8, bits=3, layers=("fc1",)))
    assert model.fc1.parametrizations.weight[0].indices.shape[0] == 2
    data, _ = _roundtrip(model, torch.randn(2, 2, 8, 8))
    entry = next(t for t in parse(data).header["tensors"] if t["name"] == "fc1.weight")
    assert entry["stages"] == 2 and entry["enc"] == "vq"


def test_hash_is_stable_and_spreads_evenly() -> None:
    index, sign = hash_positions(100_000, 1000, seed=42)
    again, _ = hash_positions(100_000, 1000, seed=42)
    other, _ = hash_positions(100_000, 1000, seed=43)
    assert torch.equal(index, again) and not torch.equal(index, other)
    counts = torch.bincount(index, minlength=1000)
    assert int(counts.min()) > 50 and int(counts.max()) < 160  # about 100 each
    assert abs(float(sign.mean())) < 0.02
    # fixed values: files written earlier depend on them
    first, signs = hash_positions(6, 1000, seed=42)
    assert first.tolist() == [668, 893, 94, 698, 121, 873]
    assert signs.tolist() == [-1.0, -1.0, -1.0, -1.0, -1.0, 1.0]


def test_hashed_weights_share_buckets_and_train() -> None:
    torch.manual_seed(0)
    model = Net()
    report = sq.quantize_(model, HashedNets(compression=8, layer_types=("Linear",)))
    assert report["fc1"]["buckets"] == 144 * 64 // 8
    p = model.fc1.parametrizations.weight[0]
    assert isinstance(p, HashedWeight)
    buckets = model.fc1.parametrizations.weight.original
    w = model.fc1.weight.detach().reshape(-1)
    same = p.index == p.index[0]
    assert torch.equal(w[same].abs(), buckets.detach()[p.index[0]].abs().expand(int(same.sum())))
    x, y = torch.randn(16, 2, 8, 8), torch.randint(0, 8, (16,))
    before = buckets.detach().clone()
    sq.fit(model, [(x, y)], sq.TrainConfig(epochs=2, lr=0.05), progress=False)
    assert not torch.equal(buckets.detach(), before)
    data, _ = _roundtrip(model, x)
    entry = next(t for t in parse(data).header["tensors"] if t["name"] == "fc1.weight")
    assert entry["enc"] == "hashed" and entry["len"] == 4 * report["fc1"]["buckets"]


def test_a_trained_layer_starts_from_least_squares_buckets() -> None:
    layer = nn.Linear(50, 40)
    w = layer.weight.detach().clone()
    sq.quantize_(layer, HashedNets(compression=2, signed=True, layers=("",)))
    p = layer.parametrizations.weight[0]
    buckets = layer.parametrizations.weight.original.detach()
    member = p.index == 7
    signed = w.reshape(-1)[member] * p.sign[member]
    assert float(buckets[7]) == pytest.approx(float(signed.mean()), abs=1e-6)


def test_bad_input() -> None:
    with pytest.raises(ConfigError, match="bits"):
        ProductQuantization(bits=0)
    with pytest.raises(ConfigError, match="subvector"):
        ProductQuantization(subvector=0)
    with pytest.raises(ConfigError, match="compression"):
        HashedNets(compression=0.5)
    with pytest.raises(ModelError, match="fc2: .*subvector 5 does not divide"):
        sq.quantize_(Net(), ProductQuantization(subvector=5, layers=("fc2",)))
    with pytest.raises(ModelError, match="no layer"):
        sq.quantize_(nn.Sequential(nn.ReLU()), HashedNets())
    layer = nn.Linear(8, 4)
    sq.quantize_(layer, ProductQuantization(subvector=2, bits=1, layers=("",)))
    with pytest.raises(ModelError, match="cannot be assigned"):
        layer.weight = torch.zeros(4, 8)


def test_qcnn_response_fitting_lowers_the_output_error() -> None:
    torch.manual_seed(0)
    model = Net()
    # inputs with correlated features, where the weight error and the output error differ
    x = torch.randn(64, 2, 8, 8) * torch.tensor([3.0, 0.1])[None, :, None, None]
    batches = [(x[i : i + 16], torch.zeros(16, dtype=torch.long)) for i in range(0, 64, 16)]
    plain, fitted = copy.deepcopy(model), copy.deepcopy(model)
    cfg = {"subvector": 2, "bits": 2, "layer_types": ("Linear", "Conv2d")}
    sq.quantize_(plain, ProductQuantization(**cfg))
    report = sq.quantize_(fitted, ProductQuantization(response=True, **cfg), data=batches)
    assert set(report) == {"conv", "fc1", "fc2"}

    def output_error(m: nn.Module) -> float:
        with torch.no_grad():
            ref = model(x)
            return float((m(x) - ref).norm() / ref.norm())

    assert output_error(fitted) < output_error(plain)
    with pytest.raises(ModelError, match="needs data"):
        sq.quantize_(copy.deepcopy(model), ProductQuantization(response=True, **cfg))
    with pytest.raises(ConfigError, match="one stage"):
        ProductQuantization(response=True, stages=2)


@pytest.mark.parametrize(
    ("flags", "encoding"),
    [
        (["--method", "pq", "--bits", "4", "--subvector", "4"], "vq"),
        (["--method", "rq", "--bits", "2", "--shared-codebook"], "vq"),
        (["--method", "hashednets", "--compression", "16"], "hashed"),
        (["--method", "kmeans", "--bits", "3", "--weighting", "fisher"], None),
    ],
)
def test_codebook_methods_from_the_command_line(
    flags, encoding, tmp_path, capsys, real_data
) -> None:
    import json

    from squeezer.cli import main
    from squeezer.coding import parse

    out = tmp_path / "l5.sqz"
    argv = [
        "quantize", "lenet5", *flags, "--layers", "fc1,fc2", "--dataset", "mnist",
        "--data-dir", str(real_data / "mnist"), "--limit", "256", "--finetune-epochs", "1",
        "--calibration", "2", "--quiet", "--out", str(out), "--json", "-",
    ]  # fmt: skip
    assert main(argv) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out[captured.out.index("{") :])
    assert result["sqz_bytes"] == out.stat().st_size < result["float_sqz_bytes"] / 4
    assert 0 <= result["top1_qat"] <= 1 and "top1_ptq" in result
    tensors = {t["name"]: t for t in parse(out.read_bytes()).header["tensors"]}
    if encoding is not None:
        assert tensors["fc1.weight"]["enc"] == encoding
    assert tensors["conv1.weight"]["enc"] == "raw"  # --layers left the convolutions alone
    back = sq.load(out)
    assert back(torch.zeros(1, 1, 28, 28)).shape == (1, 10)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--method", "pq", "--compression", "4"], "--compression is for --method hashednets"),
        (["--method", "hashednets", "--bits", "3"], "use --compression"),
        (["--method", "twn", "--subvector", "2"], "--subvector is for --method pq and rq"),
        (["--method", "kmeans", "--response"], "--response is for --method pq and rq"),
        (["--method", "pq", "--stochastic"], "--stochastic is not for --method pq"),
        (["--method", "rq", "--response"], "one stage"),
        (["--method", "pq", "--subvector", "3", "--layers", "fc2"], "does not divide"),
    ],
)
def test_codebook_flags_that_cannot_work(flags, message, capsys, real_data) -> None:
    from squeezer.cli import main

    argv = ["quantize", "lenet5", *flags, "--dataset", "mnist", "--limit", "64",
            "--data-dir", str(real_data / "mnist"), "--calibration", "1"]  # fmt: skip
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
