import copy

import pytest
import torch
from torch import nn

import squeezer as sq
from squeezer.factorization import SVD, Tucker, factorize_
from squeezer.surgery import apply_records

ZOO = [n for n in sq.models.list_models() if not n.endswith("_imagenet")]


@pytest.mark.parametrize("name", ZOO)
def test_factorize_every_zoo_model_keeps_it_runnable(name):
    torch.manual_seed(0)
    model = sq.models.create(name, num_classes=10, in_channels=1, input_size=28).eval()
    x = torch.randn(2, 1, 28, 28)
    report = factorize_(model, Tucker(rank=0.25, n_iter_max=2, svd="randomized_svd"))
    factorize_(model, SVD(rank=0.25))
    with torch.no_grad():
        assert model(x).shape == (2, 10)
    converted = report.converted
    if any(isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1) for m in model.modules()):
        assert converted, report.format()
    for row in converted:
        assert row.flops_after < row.flops_before and row.params_after < row.params_before


def test_report_rows_and_skips():
    torch.manual_seed(0)
    model = sq.models.create("lenet5")
    report = factorize_(model, Tucker(rank=1.0, exclude=("conv2",)))
    rows = {r.name: r for r in report.layers}
    assert set(rows) == {"conv1"}  # conv2 excluded, fc layers are not Conv2d
    # conv1 (1 -> 20) at full rank adds two 1x1 convs: more FLOPs, so it is skipped...
    assert not rows["conv1"].converted and "would not reduce FLOPs" in rows["conv1"].reason
    # ...unless forced, and then it is exact
    model2 = sq.models.create("lenet5")
    ref = copy.deepcopy(model2).eval()
    forced = factorize_(model2, Tucker(rank=1.0, force=True, layers=("conv*",)))
    assert [r.name for r in forced.converted] == ["conv1", "conv2"]
    assert all(r.weight_error < 1e-6 for r in forced.converted)
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(model2.eval()(x), ref(x), rtol=1e-4, atol=1e-5)
    text = forced.format()
    assert "conv2" in text and "total over 2 converted layers" in text
    d = forced.to_dict()
    assert d["totals"]["layers_converted"] == 2 and d["layers"][0]["ranks"]


def test_per_layer_ranks_override_the_default():
    model = sq.models.create("lenet300")
    report = factorize_(model, SVD(rank=0.1, per_layer={"fc1": 5}))
    ranks = {r.name: r.ranks for r in report.converted}
    assert ranks["fc1"] == [5] and ranks["fc2"] == [10]


def test_asymmetric_reconstruction_lowers_the_output_error():
    torch.manual_seed(0)
    model = sq.models.create("lenet5").eval()
    ref = copy.deepcopy(model)
    plain = copy.deepcopy(model)
    batches = [torch.randn(16, 1, 28, 28) for _ in range(4)]
    factorize_(plain, Tucker(rank=0.3))
    report = factorize_(model, Tucker(rank=0.3), calibration=batches)
    conv2 = next(r for r in report.converted if r.name == "conv2")
    assert conv2.output_error_after < conv2.output_error_before
    x = torch.randn(64, 1, 28, 28)
    with torch.no_grad():
        gap_plain = (plain(x) - ref(x)).norm()
        gap_refit = (model(x) - ref(x)).norm()
    assert gap_refit < gap_plain


@pytest.mark.parametrize("fmt", ["sqz", "checkpoint"])
def test_factorized_model_saves_and_loads_without_replaying(tmp_path, fmt):
    torch.manual_seed(0)
    model = sq.models.create("lenet5").eval()
    factorize_(model, Tucker(rank=0.5))
    # a TT layer has far fewer parameters but, at batch 1, more FLOPs: it needs force
    factorize_(model, sq.factorization.TensorTrain(rank=8, layers=("fc1",), force=True))
    factorize_(model, SVD(rank=0.5, layers=("fc2",)))
    x = torch.randn(2, 1, 28, 28)
    if fmt == "sqz":
        path = tmp_path / "m.sqz"
        sq.save(model, path)
        loaded = sq.load(path)
    else:
        path = tmp_path / "m.pt"
        sq.save_checkpoint(model, path)
        loaded = sq.load_checkpoint(path)
    assert isinstance(loaded.fc1, sq.layers.TTLinear)
    assert isinstance(loaded.conv2, nn.Sequential) and len(loaded.conv2) == 3
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(x), model(x))


def test_records_with_a_bad_spec_fail_clearly():
    model = sq.models.create("lenet5")
    with pytest.raises(sq.surgery.SurgeryError, match="unknown module type"):
        apply_records(model, [{"module": "conv1", "type": "Replace", "spec": {"type": "Evil"}}])
