import pytest
import torch
from torch import nn

import squeezer as sq
from squeezer.analysis import count_flops
from squeezer.errors import ConfigError
from squeezer.factorization import ACDC, LDR, Circulant, Fastfood, factorize_
from squeezer.layers import ACDCLinear, CirculantLinear, FastfoodLinear, LDRLinear

KINDS = [
    (Circulant(), CirculantLinear),
    (Fastfood(), FastfoodLinear),
    (LDR(rank=2), LDRLinear),
    (ACDC(depth=2), ACDCLinear),
]


@pytest.mark.parametrize(("config", "cls"), KINDS)
def test_structured_replacements_convert_save_and_load(tmp_path, config, cls):
    torch.manual_seed(0)
    # 16x16 inputs keep the least-squares fits of LDR and ACDC to seconds (fc1 is 256 -> 300)
    model = sq.models.create("lenet300", input_size=16).eval()
    # force: at 300 -> 100, an FFT-based layer can cost more FLOPs than the dense one
    report = factorize_(model, config.replace(layers=("fc1", "fc2"), force=True))
    assert [r.name for r in report.converted] == ["fc1", "fc2"]
    for row in report.converted:
        assert row.params_after < row.params_before / 10
        assert row.flops_after > 0  # counted from the layer's own formula
        assert 0 < row.weight_error < 1.0  # a fit does better than the zero matrix
    assert report.converted[0].flops_after < report.converted[0].flops_before  # 256 -> 300
    assert isinstance(model.fc1, cls)
    sq.save(model, tmp_path / "m.sqz")
    loaded = sq.load(tmp_path / "m.sqz").eval()
    x = torch.randn(3, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


def test_count_flops_uses_the_layers_formula():
    layer = FastfoodLinear(64, 64)
    total, per = count_flops(nn.Sequential(layer), torch.randn(5, 64))
    assert total == 5 * layer.flops_per_row() and per["0"] == total


def test_unfit_replacement_keeps_random_initialization():
    model = sq.models.create("lenet300")
    report = factorize_(model, Circulant(fit=False, layers=("fc1",)))
    assert report.converted and report.converted[0].weight_error > 0.9


def test_ldr_rank_must_be_an_int():
    with pytest.raises(ConfigError, match="displacement rank"):
        LDR(rank=0.5)


def test_structured_layer_costlier_than_dense_is_skipped():
    model = sq.models.create("lenet300")
    report = factorize_(model, LDR(rank=2, layers=("fc2",)))
    assert not report.converted
    assert "would not reduce FLOPs" in report.layers[0].reason
