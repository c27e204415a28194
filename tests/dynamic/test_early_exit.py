"""Early exits: a traced model cut after named modules, inference that stops confident
examples (each gets the logits of the exit it took; the rest run on, narrowed), the heads
trained with the backbone frozen, FLOPs per exit, and bad input."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import squeezer as sq
from squeezer.dynamic import ExitLoss, early_exits, exit_costs, expected_flops
from squeezer.errors import ConfigError, ModelError


def _net(threshold: float = 0.9):
    torch.manual_seed(0)
    model = sq.models.create("resnet20", num_classes=10, in_channels=1, input_size=28).eval()
    x = torch.randn(12, 1, 28, 28)
    return model, early_exits(model, ["layers.1", "layers.0"], x[:2], threshold=threshold), x


def test_threshold_one_runs_the_whole_model_and_a_tiny_one_stops_at_the_first_exit():
    model, net, x = _net(threshold=1.0)
    net.eval()
    torch.testing.assert_close(net(x), model(x))
    assert net.last_exits.tolist() == [2] * 12
    net.threshold = 1e-6
    first = net.heads[0](model.layers[0](model.relu(model.bn1(model.conv1(x)))))
    torch.testing.assert_close(net(x), first)
    assert net.last_exits.tolist() == [0] * 12


def test_each_example_gets_the_logits_of_the_first_confident_exit():
    _, net, x = _net()
    for head in net.heads:  # sharper heads: a spread of confidences
        nn.init.normal_(head[-1].weight, std=3.0)
    net.freeze_backbone_()
    net.train()  # every exit's logits, the backbone in eval mode
    final = net(x)
    logits = [*net.exit_logits, final]
    confidence = torch.stack([torch.softmax(z, 1).amax(1) for z in logits[:-1]]).detach()
    net.threshold = float(confidence.amax(0).median())  # half stop early, half do not
    net.eval()
    out = net(x)
    for i in range(12):
        took = next((e for e in range(2) if confidence[e, i] >= net.threshold), 2)
        assert int(net.last_exits[i]) == took
        torch.testing.assert_close(out[i], logits[took][i].detach())
    assert 0 < int((net.last_exits < 2).sum()) < 12  # some stopped early, some did not


def test_the_heads_train_alone_with_the_backbone_frozen():
    train, _ = sq.data.load("digits")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10))
    net = early_exits(model, ["2"], torch.zeros(1, 1, 28, 28))
    net.freeze_backbone_()
    backbone = {k: v.clone() for k, v in model.state_dict().items()}
    head = net.heads[0][-1].weight.detach().clone()
    sq.fit(net, train, epochs=1, lr=0.05, callbacks=[ExitLoss(net)], verbose=False)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in backbone.items())
    assert not torch.equal(head, net.heads[0][-1].weight)


def test_costs_grow_with_the_exit_and_the_expected_cost_is_their_mean():
    model, net, x = _net()
    net.eval()
    costs = exit_costs(net, x[:1])
    assert not net.training  # counting leaves the mode as it was
    assert costs[0] < costs[1] < costs[2]
    full = sq.analysis.count_flops(model, x[:1])[0]
    assert full < costs[2] < 1.01 * full  # the model plus the two small heads
    exits = torch.tensor([0, 0, 2, 1])
    assert expected_flops(costs, exits) == pytest.approx((2 * costs[0] + costs[1] + costs[2]) / 4)


def test_bad_input():
    model, _, x = _net()
    with pytest.raises(ModelError, match="layers.9 is not a module the forward pass calls"):
        early_exits(model, ["layers.9"], x[:1])
    with pytest.raises(ConfigError, match=r"threshold must be in \(0, 1\]"):
        early_exits(model, ["layers.0"], x[:1], threshold=0.0)

    class Branchy(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x if x.sum() > 0 else -x  # data-dependent control flow: fx cannot trace

    with pytest.raises(ModelError, match="torch.fx cannot trace the model"):
        early_exits(Branchy(), ["x"], x[:1])
    _, net, _ = _net()
    with pytest.raises(ConfigError, match="2 exits, 1 weights"):
        ExitLoss(net, weights=[1.0])


def test_heads_can_have_a_convolution_of_their_own():
    model, _, x = _net()
    net = early_exits(model, ["layers.0"], x[:2], head_channels=8, threshold=1e-6).eval()
    head = net.heads[0]
    assert isinstance(head[0], nn.Conv2d) and head[0].out_channels == 8 and head[0].stride == (2, 2)
    stage = model.layers[0](model.relu(model.bn1(model.conv1(x))))
    torch.testing.assert_close(net(x), head(stage))
