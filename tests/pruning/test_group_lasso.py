"""Group-lasso training (SSL) and removal of the zeroed groups."""

from __future__ import annotations

import torch
from torch import nn

import squeezer as sq
from squeezer.pruning import GroupLasso, group_norms
from squeezer.train import TrainState


def _state(model: nn.Module) -> TrainState:
    return TrainState(model=model, optimizer=None, config=sq.TrainConfig())


def test_filter_and_channel_subgradients() -> None:
    conv = nn.Conv2d(2, 2, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[3.0, 4.0], [0.0, 2.0]]).view(2, 2, 1, 1))
    model = nn.Sequential(conv)
    conv.weight.grad = torch.zeros_like(conv.weight)
    GroupLasso(0.5, groups=("filters",)).on_after_backward(_state(model))
    expected = 0.5 * torch.tensor([[3 / 5, 4 / 5], [0.0, 1.0]])
    torch.testing.assert_close(conv.weight.grad.view(2, 2), expected)
    conv.weight.grad.zero_()
    GroupLasso(0.5, groups=("channels",)).on_after_backward(_state(model))
    expected = 0.5 * torch.tensor([[1.0, 4 / 20**0.5], [0.0, 2 / 20**0.5]])
    torch.testing.assert_close(conv.weight.grad.view(2, 2), expected)


def test_branch_group_covers_every_weight_of_the_branch() -> None:
    model = sq.models.create("resnet20")
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    GroupLasso(1.0, groups=(), branches=["layers.0.1"]).on_after_backward(_state(model))
    block = model.layers[0][1]
    total = torch.sqrt(sum(p.detach().pow(2).sum() for p in block.parameters()))
    torch.testing.assert_close(block.conv1.weight.grad, block.conv1.weight.detach() / total)
    assert model.layers[0][0].conv1.weight.grad.abs().sum() == 0


def test_training_shrinks_filters_and_threshold_removes_the_zero_ones() -> None:
    train, _ = sq.data.load("digits")
    model = sq.models.create("vgg11_bn", num_classes=10, in_channels=1, input_size=28)
    before = torch.cat(list(group_norms(model).values())).sum()
    sq.fit(
        model,
        train.subset(64),
        epochs=1,
        batch_size=32,
        lr=0.05,
        weight_decay=0,
        callbacks=[GroupLasso(0.05)],
    )
    assert torch.cat(list(group_norms(model).values())).sum() < before
    with torch.no_grad():
        model.features[4].weight[[3, 7, 8]] = 0  # what a long SSL run leaves behind
        model.features[4].bias[[3, 7, 8]] = 0
    x = torch.randn(1, 1, 28, 28)
    pruned = sq.prune_channels(model, x, criterion="l2", threshold=1e-8)
    assert pruned.features[4].out_channels == 125
    assert pruned.features[0].out_channels == 64  # nothing else was zero
