"""BlockDrop: skippable blocks compute exactly the backbone where they run and pass the input
through where they do not, row by row; per-example FLOPs are the full cost less the blocks
skipped; the policy learns from its reward by REINFORCE with the backbone untouched; bad
input."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import squeezer as sq
from squeezer.analysis import count_flops
from squeezer.dynamic import BlockDropNet, SkippableBlock, block_drop, train_policy
from squeezer.errors import ConfigError, ModelError


def _resnet():
    torch.manual_seed(0)
    return sq.models.create("resnet20", num_classes=10, in_channels=1, input_size=28).eval()


def test_only_blocks_that_keep_the_shape_are_skippable_and_no_decision_changes_nothing():
    model = _resnet()
    x = torch.randn(6, 1, 28, 28)
    ref = model(x).detach()
    net = block_drop(model, example_inputs=x[:1])
    assert "layers.1.0" not in net.names and "layers.2.0" not in net.names  # they downsample
    assert len(net.names) == 7 and net.names[0] == "layers.0.0"
    assert all(isinstance(b, SkippableBlock) for b in net.blocks)
    torch.testing.assert_close(net.run(x, None), ref)
    torch.testing.assert_close(net.run(x, torch.ones(6, 7, dtype=torch.bool)), ref)


def test_each_row_runs_exactly_the_blocks_its_mask_keeps():
    model = _resnet()
    plain = copy.deepcopy(model)
    net = block_drop(model, example_inputs=torch.zeros(1, 1, 28, 28))
    x = torch.randn(5, 1, 28, 28)
    g = torch.Generator().manual_seed(1)
    mask = torch.rand(5, 7, generator=g) > 0.5
    out = net.run(x, mask).detach()
    for i in range(5):  # the same example through the model with its dropped blocks removed
        alone = copy.deepcopy(plain)
        for k, name in enumerate(net.names):
            if not mask[i, k]:
                sq.core.set_module(alone, name, nn.Identity())
        torch.testing.assert_close(out[i], alone(x[i : i + 1])[0].detach(), atol=1e-5, rtol=1e-5)


def test_example_flops_are_the_whole_cost_less_the_skipped_blocks():
    model = _resnet()
    x = torch.randn(4, 1, 28, 28)
    net = block_drop(model, example_inputs=x[:1]).eval()
    full = count_flops(model, x[:1])[0] + count_flops(net.policy, x[:1])[0]
    with torch.no_grad():
        net.policy[-1].bias.copy_(torch.tensor([5.0, -5, 5, -5, -5, 5, 5]))  # 4 of 7 run
    out, flops = net.forward_flops(x)
    assert net.last_mask.sum(1).tolist() == [4, 4, 4, 4]
    per_block = count_flops(model, x[:1])[1]
    expect = full - sum(per_block[net.names[k]] for k in (1, 3, 4))
    assert flops.tolist() == [expect] * 4
    torch.testing.assert_close(out, net.run(x, net.last_mask))
    m = sq.analysis.measure_data(net, [(x, torch.zeros(4, dtype=torch.long))], rounds=1)
    assert m.model.expected_flops == expect


def test_the_policy_learns_to_skip_when_wrong_answers_cost_nothing():
    train, _ = sq.data.load("digits")
    torch.manual_seed(0)
    model = sq.models.create("resnet20", num_classes=10, in_channels=1, input_size=28)
    sq.fit(model, train.subset(256), epochs=1, lr=0.05, batch_size=64)
    model.eval()
    backbone = [p.detach().clone() for p in model.parameters()]
    net = block_drop(model, example_inputs=torch.zeros(1, 1, 28, 28))
    batches = list(sq.data.loader(train.subset(256), 64))
    assert bool(net.decide(batches[0][0]).all())  # the policy starts by keeping every block
    history = train_policy(net, batches, epochs=2, lr=0.05, penalty=0.0)
    # penalty 0: the reward is 1 - used^2 when right and 0 when wrong; fewer blocks pay
    assert history[-1]["used"] < history[0]["used"] < 1.0
    for p, before in zip(model.parameters(), backbone, strict=True):  # never trained
        torch.testing.assert_close(p.detach(), before)
    assert all(p.requires_grad for p in model.parameters())
    assert not net.training


def test_bad_input():
    model = _resnet()
    with pytest.raises(ModelError, match=r"layers.1.0 maps \(1, 16, 28, 28\) to \(1, 32, 14, 14\)"):
        block_drop(copy.deepcopy(model), ["layers.0.0", "layers.1.0"], torch.zeros(1, 1, 28, 28))
    with pytest.raises(ModelError, match="no module matches"):
        block_drop(copy.deepcopy(model), ["nothing"], torch.zeros(1, 1, 28, 28))
    with pytest.raises(ModelError, match="no zoo residual blocks"):
        block_drop(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), (), torch.zeros(1, 4))
    with pytest.raises(ModelError, match="one logit per skippable block"):
        block_drop(copy.deepcopy(model), (), torch.zeros(1, 1, 28, 28),
                   policy=nn.Sequential(nn.Flatten(), nn.Linear(784, 3)))  # fmt: skip
    net = block_drop(copy.deepcopy(model), (), torch.zeros(1, 1, 28, 28))
    assert isinstance(net, BlockDropNet)
    with pytest.raises(ConfigError, match="explore in"):
        train_policy(net, [], explore=0.2)
