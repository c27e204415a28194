"""Measurement over a dataset: a dynamic network's expected FLOPs are the mean of each
example's own cost, accuracy and the spread come from real batches, a static model costs the
same on every example, the CLI reports it, and bad input."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import squeezer as sq
from squeezer.analysis import count_flops, measure_data
from squeezer.dynamic import early_exits, exit_costs
from squeezer.errors import ConfigError


def _exits():
    torch.manual_seed(0)
    model = sq.models.create("resnet20", num_classes=10, in_channels=1, input_size=28).eval()
    x = torch.randn(40, 1, 28, 28)
    y = torch.randint(0, 10, (40,))
    net = early_exits(model, ["layers.0", "layers.1"], x[:2], threshold=0.5).eval()
    for head in net.heads:
        nn.init.normal_(head[-1].weight, std=3.0)
    net.freeze_backbone_().train()  # every exit's logits, the backbone in eval mode
    with torch.no_grad():
        net(x)
    top = torch.stack([torch.softmax(z, 1).amax(1) for z in net.exit_logits]).amax(0)
    net.threshold = float(top.median())  # about half stop early, half run to the end
    return model, net.eval(), [(x[:16], y[:16]), (x[16:], y[16:])]


def test_expected_flops_are_the_mean_of_each_examples_exit_cost():
    model, net, batches = _exits()
    costs = exit_costs(net, batches[0][0][:1])
    taken, right = [], 0
    with torch.no_grad():
        for x, y in batches:
            out = net(x)
            taken.append(net.last_exits.clone())
            right += int((out.argmax(1) == y).sum())
    taken = torch.cat(taken)
    assert 0 < int((taken < 2).sum()) < 40  # a spread of exits
    m = measure_data(net, batches, baseline=model, rounds=2, threads=1)
    per_example = torch.tensor(costs, dtype=torch.float64)[taken]
    assert m.model.expected_flops == pytest.approx(float(per_example.mean()))
    assert m.model.min_flops == pytest.approx(float(per_example.min()))
    assert m.model.max_flops == pytest.approx(costs[-1])
    assert m.model.top1 == pytest.approx(right / 40)
    full = count_flops(model, batches[0][0][:1])[0]
    assert m.baseline is not None and m.baseline.expected_flops == full
    assert m.baseline.min_flops == m.baseline.max_flops == full
    assert m.flops_reduction == pytest.approx(full / float(per_example.mean()))
    assert m.examples == 40 and m.model.seconds > 0 and m.speedup is not None
    d = m.to_dict()
    assert d["model"]["ms_per_example"] == pytest.approx(1000 * m.model.seconds / 40)
    assert "expected FLOPs" in m.format() and "faster" in m.format()
    assert not net.training and not model.training


def test_a_dataset_is_read_in_order_up_to_the_examples_asked_for():
    train, _ = sq.data.load("digits")
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    model.train()
    m = measure_data(model, train, examples=130, batch_size=50, rounds=1)
    assert m.examples == 130 and m.batch_size == 50
    assert m.model.top1 == pytest.approx(sq.evaluate(model, train.subset(130))["top1"])
    assert model.training  # its mode is restored
    unlabelled = measure_data(model, [torch.randn(5, 1, 28, 28)], rounds=1)
    assert unlabelled.model.top1 is None and unlabelled.baseline is None


def test_measure_cli_over_a_dataset(tmp_path, capsys, real_data):
    from squeezer.cli import main

    js = tmp_path / "m.json"
    args = ["--examples", "200", "--rounds", "1", "--data-dir", str(real_data)]
    code = main(
        ["measure", "lenet5", "--no-latency", "--dataset", "mnist", *args, "--json", str(js)]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "mnist test images, over 200 examples" in out
    over = json.loads(js.read_text())["over_data"]
    assert over["dataset"] == "mnist" and over["examples"] == 200
    assert over["model"]["expected_flops"] == over["model"]["max_flops"]


def test_bad_input():
    model = nn.Linear(3, 2)
    with pytest.raises(ConfigError, match="rounds, batch_size and examples must be >= 1"):
        measure_data(model, [torch.randn(2, 3)], rounds=0)
    with pytest.raises(ConfigError, match="gave no examples"):
        measure_data(model, [])
    with pytest.raises(ConfigError, match="must be tensors"):
        measure_data(model, [("a", "b")])
