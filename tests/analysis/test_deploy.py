import pytest
import torch
from torch import nn

import squeezer as sq
from squeezer.analysis import inference_copy, time_models


@pytest.mark.parametrize("channels_last", [False, True])
def test_inference_copy_keeps_outputs_and_folds_batchnorm(channels_last):
    torch.manual_seed(0)
    model = sq.models.create("resnet20", num_classes=10).eval()
    for m in model.modules():  # non-trivial statistics, so a wrong fold would show
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, 3, 32, 32)
    fast = inference_copy(model, channels_last=channels_last)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # original untouched
    with torch.no_grad():
        torch.testing.assert_close(
            fast(x.contiguous(memory_format=torch.channels_last) if channels_last else x),
            model(x),
            rtol=1e-4,
            atol=1e-4,
        )
    if channels_last:
        conv = next(m for m in fast.modules() if isinstance(m, nn.Conv2d))
        assert conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_inference_copy_of_untraceable_model_warns_and_copies():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)
            self.bn = nn.BatchNorm2d(2)

        def forward(self, x):
            if x.sum() > 0:  # data-dependent control flow defeats torch.fx
                return self.bn(self.conv(x))
            return self.conv(x)

    model = Branchy().eval()
    with pytest.warns(UserWarning, match="could not be traced"):
        fast = inference_copy(model)
    assert isinstance(fast.bn, nn.BatchNorm2d) and fast is not model


def test_time_models_accepts_channels_last_inputs():
    model = inference_copy(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)), channels_last=True)
    (lat,) = time_models(
        [model],
        torch.randn(1, 3, 8, 8),
        2,
        1,
        min_run_time=0.0,
        min_rounds=1,
        memory_format=torch.channels_last,
    )
    assert lat.batch_size == 2 and lat.runs >= 1 and lat.median_ms > 0


def test_measure_in_deploy_layout_times_both_models_alike():
    torch.manual_seed(0)
    base = sq.models.create("resnet20", num_classes=10)
    small = sq.prune_channels(base, torch.randn(1, 3, 32, 32), ratio=0.5)
    m = sq.measure(
        small, torch.randn(1, 3, 32, 32), baseline=base, batch_sizes=(2,), min_run_time=0.0,
        per_layer_latency=False, layout="deploy",
    )  # fmt: skip
    assert "BatchNorm folded, channels-last" in m.backend
    assert m.latency and m.baseline.latency and m.comparison.speedup
    assert m.params < m.baseline.params  # counts are of the models as given
    assert any(isinstance(x, nn.BatchNorm2d) for x in small.modules())  # untouched
    with pytest.raises(ValueError, match="layout"):
        sq.measure(small, torch.randn(1, 3, 32, 32), layout="compiled")
