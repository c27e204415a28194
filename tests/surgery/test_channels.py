"""Channel pruning: every zoo model, exactness against zeroing, coupling, criteria, save/load."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn

import squeezer as sq
from squeezer.pruning import plan_channels, prune_channels
from squeezer.surgery import ChannelGraph, SurgeryError, apply_plan, zero_channels_

ZOO = [n for n in sq.models.list_models() if not n.endswith("_imagenet")]


def _randomize_bn(model: nn.Module) -> nn.Module:
    """Non-trivial BatchNorm statistics, so a forgotten BN channel would show."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=gen) - 0.5)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.rand(n, generator=gen) - 0.5)
    return model.eval()


def implied_params(model: nn.Module) -> int:
    """Parameters that each layer's channel numbers imply, from its hyper-parameters alone."""
    total = 0
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            kh, kw = m.kernel_size
            total += m.out_channels * (m.in_channels // m.groups) * kh * kw
            total += m.out_channels if m.bias is not None else 0
        elif isinstance(m, nn.Linear):
            total += m.out_features * m.in_features + (m.out_features if m.bias is not None else 0)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            total += 2 * m.num_features
    return total


@pytest.mark.parametrize("name", ZOO)
def test_every_zoo_model_prunes_runs_and_is_exact(name: str) -> None:
    torch.manual_seed(0)
    model = _randomize_bn(sq.models.create(name, num_classes=10, in_channels=1, input_size=28))
    x = torch.randn(2, 1, 28, 28)
    plan = plan_channels(model, x, ratio=0.3)
    pruned = apply_plan(model, plan).eval()
    with torch.no_grad():
        y = pruned(x)
        zeroed = zero_channels_(copy.deepcopy(model), plan)(x)
    assert y.shape == (2, 10)
    params = sum(p.numel() for p in pruned.parameters())
    assert params == implied_params(pruned)
    assert params < 0.8 * sum(p.numel() for p in model.parameters())
    scale = float(zeroed.abs().max()) + 1.0
    torch.testing.assert_close(y, zeroed, rtol=1e-4, atol=1e-5 * scale)
    # the channel shuffle's view-transpose and the shift's per-channel slices are opaque to
    # the graph: the channels around them stay (named in warnings), the rest is pruned
    opaque = OPAQUE.get(name, ())
    assert [w for w in plan.graph.warnings if not w.startswith(opaque or ("-",))] == []
    assert bool(plan.graph.warnings) == bool(opaque)


OPAQUE = {
    "shufflenet": ("reshape",),
    "shiftnet": ("indexing of the channels", "operation copy_", "operation empty_like"),
}


class Branchy(nn.Module):
    """Concatenation, a residual addition and a depthwise convolution in one small model."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.bn_a = nn.BatchNorm2d(8)
        self.b = nn.Conv2d(3, 4, 1)
        self.dw = nn.Conv2d(12, 12, 3, padding=1, groups=12)
        self.bn_dw = nn.BatchNorm2d(12)
        self.proj = nn.Conv2d(12, 12, 1)
        self.head = nn.Linear(12 * 4 * 4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.cat([torch.relu(self.bn_a(self.a(x))), self.b(x)], dim=1)  # 8 + 4 channels
        z = torch.relu(self.bn_dw(self.dw(y)))
        z = self.proj(z) + z  # residual: proj's outputs coupled with the depthwise path
        z = nn.functional.adaptive_avg_pool2d(z, 4)
        return self.head(torch.flatten(z, 1))


def test_written_model_with_concat_residual_and_depthwise() -> None:
    torch.manual_seed(1)
    model = _randomize_bn(Branchy())
    x = torch.randn(3, 3, 8, 8)
    plan = plan_channels(model, x, ratio=0.5)
    pruned = apply_plan(model, plan).eval()
    with torch.no_grad():
        torch.testing.assert_close(
            pruned(x), zero_channels_(copy.deepcopy(model), plan)(x), rtol=1e-5, atol=1e-5
        )
    # a and b are cut in half through the concat; dw, bn_dw and proj follow the same 6 channels
    assert (pruned.a.out_channels, pruned.b.out_channels) == (4, 2)
    assert pruned.dw.in_channels == pruned.dw.out_channels == pruned.dw.groups == 6
    assert (pruned.proj.in_channels, pruned.proj.out_channels) == (6, 6)
    assert pruned.head.in_features == 6 * 16  # flatten: each channel is a block of 16 features


def test_residual_branches_share_one_index_set() -> None:
    model = sq.models.create("resnet20")
    graph = ChannelGraph(model, torch.randn(1, 3, 32, 32))
    pruned = prune_channels(model, torch.randn(1, 3, 32, 32), ratio=0.5)
    stage = pruned.layers[0]
    assert pruned.conv1.out_channels == stage[0].conv2.out_channels == stage[2].conv2.out_channels
    assert pruned.conv1.out_channels == 8
    assert graph.warnings == []


def _planted(model: nn.Module, layer: str, weak: list[int]) -> None:
    with torch.no_grad():
        getattr(model, layer).weight[weak] *= 1e-3


@pytest.mark.parametrize("criterion", ["l1", "l2"])
def test_norm_criteria_pick_the_planted_weakest_filters(criterion: str) -> None:
    torch.manual_seed(0)
    model = sq.models.create("lenet5")
    _planted(model, "conv2", [3, 17, 41])
    plan = plan_channels(
        model, torch.randn(1, 1, 28, 28), ratio={"conv2": 3 / 50}, criterion=criterion
    )
    removed = sorted(
        i for c in plan.removed for b, i in c.members if b.module == "conv2" and b.kind == "out"
    )
    assert removed == [3, 17, 41]


def test_bn_scale_picks_the_planted_smallest_gammas() -> None:
    model = sq.models.create("vgg11_bn")
    with torch.no_grad():
        model.features[1].weight.fill_(1.0)
        model.features[1].weight[[5, 9]] = 0.01
    plan = plan_channels(
        model, torch.randn(1, 3, 32, 32), ratio={"features.0": 2 / 64}, criterion="bn_scale"
    )
    removed = sorted(
        i
        for c in plan.removed
        for b, i in c.members
        if b.module == "features.0" and b.kind == "out"
    )
    assert removed == [5, 9]


def test_ignored_layers_and_round_to() -> None:
    model = sq.models.create("vgg11_bn")
    x = torch.randn(1, 3, 32, 32)
    pruned = prune_channels(model, x, ratio=0.3, ignored_layers=["features.0"], round_to=8)
    convs = [m for m in pruned.modules() if isinstance(m, nn.Conv2d)]
    assert convs[0].out_channels == 64
    assert all(c.out_channels % 8 == 0 for c in convs)
    assert convs[1].out_channels < 128


def test_pruned_model_saves_and_loads(tmp_path: Path) -> None:
    model = sq.models.create("resnet20", num_classes=10)
    x = torch.randn(2, 3, 32, 32)
    pruned = prune_channels(model, x, ratio=0.4).eval()
    for path in (
        sq.save(pruned, tmp_path / "p.sqz"),
        sq.save_checkpoint(pruned, tmp_path / "p.pt"),
    ):
        loaded = sq.load(path) if path.suffix == ".sqz" else sq.load_checkpoint(path)
        with torch.no_grad():
            assert torch.equal(loaded(x), pruned(x))
    again = prune_channels(sq.load(tmp_path / "p.sqz"), x, ratio=0.2)  # records accumulate
    assert (
        sq.load(sq.save(again, tmp_path / "q.sqz")).conv1.out_channels == again.conv1.out_channels
    )


class Untraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # data-dependent control flow: torch.fx cannot trace it
            return self.conv(x)
        return -self.conv(x)


def test_untraceable_model_gives_a_clear_error() -> None:
    with pytest.raises(SurgeryError, match="cannot trace Untraceable") as info:
        prune_channels(Untraceable(), torch.randn(1, 1, 8, 8))
    assert "test_channels.py:" in str(info.value)  # names the line that failed
    assert "if x.sum() > 0" in str(info.value)


class Odd(nn.Module):
    """A channel shuffle the graph does not know: the channels around it must stay."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 8, 3)
        self.b = nn.Conv2d(8, 8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.a(x)
        y = torch.roll(y, 1, dims=1)
        return self.b(y).mean((2, 3))


def test_unknown_operation_is_left_alone_with_a_warning() -> None:
    model = Odd()
    with pytest.warns(UserWarning, match="roll"):
        pruned = prune_channels(model, torch.randn(1, 1, 10, 10), ratio=0.5)
    assert pruned.a.out_channels == 8  # around the shuffle: untouched
    assert pruned(torch.randn(1, 1, 10, 10)).shape == (1, 8)


class Small(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.head = nn.Conv2d(6, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.bn(self.conv(x)))).mean((2, 3))


@pytest.mark.parametrize("criterion", ["taylor", "energy", "apoz"])
def test_data_criteria_pick_the_planted_dead_channel(criterion: str) -> None:
    torch.manual_seed(0)
    model = Small()
    with torch.no_grad():
        model.bn.weight[4] = 0.0  # channel 4 is always exactly zero after BN
        model.bn.bias[4] = 0.0
        model.bn.bias[[0, 1, 2, 3, 5]] = 0.5  # the others are mostly positive
    batches = [(torch.randn(8, 1, 6, 6), torch.randint(0, 3, (8,))) for _ in range(3)]
    plan = plan_channels(
        model, torch.randn(1, 1, 6, 6), ratio=1 / 6, criterion=criterion, data=batches
    )
    removed = [i for c in plan.removed for b, i in c.members if b.module == "conv"]
    assert removed == [4]


def test_data_criterion_needs_data() -> None:
    with pytest.raises(ValueError, match="needs data"):
        plan_channels(Small(), torch.randn(1, 1, 6, 6), criterion="taylor")
    with pytest.raises(ValueError, match="unknown criterion"):
        plan_channels(Small(), torch.randn(1, 1, 6, 6), criterion="magic")


def test_global_scope_ranks_across_layers() -> None:
    model = sq.models.create("vgg11_bn")
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for bn in bns:
            bn.weight.fill_(1.0)
        bns[2].weight[:100] = 0.01  # most small scales sit in one layer (256 channels)
    total = sum(bn.num_features for bn in bns)
    plan = plan_channels(
        model, torch.randn(1, 3, 32, 32), ratio=100 / total, criterion="bn_scale", scope="global"
    )
    counts = {g["layers"][0]: g["channels"] - g["kept"] for g in plan.groups}
    assert counts["features.8"] == 100 and sum(counts.values()) == 100


def test_bn_sparsity_adds_the_l1_subgradient() -> None:
    from squeezer.pruning import BNSparsity, bn_l1
    from squeezer.train import TrainState

    model = Small()
    with torch.no_grad():
        model.bn.weight.copy_(torch.tensor([0.5, -0.5, 1.0, -1.0, 2.0, 0.1]))
    model.bn.weight.grad = torch.zeros(6)
    BNSparsity(0.1).on_after_backward(
        TrainState(model=model, optimizer=None, config=sq.TrainConfig())
    )
    torch.testing.assert_close(model.bn.weight.grad, torch.tensor([0.1, -0.1, 0.1, -0.1, 0.1, 0.1]))
    assert bn_l1(model) == pytest.approx(5.1)
    train, _ = sq.data.load("digits")
    net = sq.models.create("vgg11_bn", num_classes=10, in_channels=1, input_size=28)
    before = bn_l1(net)
    sq.fit(
        net,
        train.subset(64),
        epochs=1,
        batch_size=32,
        lr=0.01,
        weight_decay=0,
        callbacks=[BNSparsity(0.5)],
    )
    assert bn_l1(net) < before


def test_zeroed_residual_branch_removes_the_whole_block(tmp_path: Path) -> None:
    from squeezer.surgery import remove_identity_blocks

    torch.manual_seed(0)
    model = _randomize_bn(sq.models.create("resnet20"))
    block = model.layers[1][2]  # an identity-shortcut block in the second stage
    with torch.no_grad():
        block.bn2.weight.zero_()  # what group lasso on the branch converges to
        block.bn2.bias.zero_()
    x = torch.randn(2, 3, 32, 32)
    shallower, removed = remove_identity_blocks(model, x)
    assert removed == ["layers.1.2"]
    assert isinstance(shallower.layers[1][2], nn.Identity)
    with torch.no_grad():
        assert torch.equal(shallower(x), model(x))
    loaded = sq.load(sq.save(shallower, tmp_path / "s.sqz"))
    assert isinstance(loaded.layers[1][2], nn.Identity)
    # a block with a live branch, or a projection shortcut, stays
    assert remove_identity_blocks(_randomize_bn(sq.models.create("resnet20")), x)[1] == []
