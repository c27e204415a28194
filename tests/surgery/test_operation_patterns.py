"""Hand-written stand-ins for the operation patterns of real architectures (timm, Hugging
Face): squeeze-excitation gates, hard-swish, BatchNorm and Conv2d subclasses with their own
forward, per-channel layer scales. Each prunes, matches the zeroed original exactly, and saves
and loads into a fresh instance."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import squeezer as sq
from squeezer.pruning import plan_channels
from squeezer.surgery import apply_plan, zero_channels_


class BatchNormAct2d(nn.BatchNorm2d):
    """Like timm's: a BatchNorm2d whose forward applies an activation too."""

    def __init__(self, num_features: int) -> None:
        super().__init__(num_features)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(super().forward(x))


class Conv2dSame(nn.Conv2d):
    """Like timm's: TensorFlow 'same' padding computed in its own forward."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, (1, 1, 1, 1)), self.weight, self.bias, self.stride, 0)


class SqueezeExcite(nn.Module):
    def __init__(self, c: int, hidden: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(c, hidden, 1)
        self.expand = nn.Conv2d(hidden, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self.expand(F.relu(self.reduce(s))))


class Patterns(nn.Module):
    """conv -> BatchNormAct -> hard-swish (x * relu6(x + 3) / 6) -> SE gate -> Conv2dSame ->
    BatchNorm -> residual -> classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.bn1 = BatchNormAct2d(16)
        self.se = SqueezeExcite(16, 8)
        self.conv = Conv2dSame(16, 16, 3)
        self.bn2 = nn.BatchNorm2d(16)
        self.head = nn.Conv2d(16, 24, 1)
        self.fc = nn.Linear(24, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn1(self.stem(x))
        x = x * F.relu6(x + 3) / 6  # hard-swish written out
        x = self.se(x)
        x = x + self.bn2(self.conv(x))
        x = F.relu(self.head(x)).mean((2, 3))
        return self.fc(x)


def _randomize(model: nn.Module) -> nn.Module:
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return model.eval()


def test_every_pattern_is_understood_and_pruned_exactly(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = _randomize(Patterns())
    x = torch.randn(2, 3, 12, 12)
    graph = sq.surgery.ChannelGraph(model, x[:1])
    assert graph.warnings == []  # nothing locked for not being understood
    plan = plan_channels(model, x[:1], ratio=0.25)
    pruned = apply_plan(model, plan).eval()
    assert pruned.stem.out_channels == 12 and pruned.se.reduce.out_channels == 6
    assert isinstance(pruned.bn1, BatchNormAct2d) and isinstance(pruned.conv, Conv2dSame)
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), zero_channels_(copy.deepcopy(model), plan)(x))
    loaded = sq.load(sq.save(pruned, tmp_path / "p.sqz"), model=Patterns())
    assert isinstance(loaded.bn1, BatchNormAct2d) and loaded.bn1.num_features == 12
    with torch.no_grad():
        assert torch.equal(loaded(x), pruned(x))


class LayerScale(nn.Module):
    """ConvNeXt-style learned per-channel scale: its channels cannot be removed."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.gamma = nn.Parameter(torch.ones(1, 8, 1, 1))
        self.out = nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.gamma * self.conv(x))


def test_a_per_channel_parameter_locks_its_channels_with_a_warning() -> None:
    model = LayerScale().eval()
    graph = sq.surgery.ChannelGraph(model, torch.randn(1, 3, 8, 8))
    assert any("gamma" in w for w in graph.warnings)
    pruned = sq.prune_channels(model, torch.randn(1, 3, 8, 8), ratio=0.5)
    assert pruned.conv.out_channels == 8  # left whole, and the model still runs


class GatedUnit(nn.Module):
    """A GLU-style gate: one conv's output split in two halves, one gating the other."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.out = nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.conv(x).chunk(2, dim=1)
        return self.out(a * torch.sigmoid(b))


def test_chunked_halves_are_coupled_and_pruned_exactly() -> None:
    torch.manual_seed(0)
    model = GatedUnit().eval()
    x = torch.randn(2, 3, 8, 8)
    graph = sq.surgery.ChannelGraph(model, x[:1])
    assert graph.warnings == []
    plan = plan_channels(model, x[:1], ratio=0.25)
    pruned = apply_plan(model, plan).eval()
    assert pruned.conv.out_channels == 12 and pruned.out.in_channels == 6  # pairs removed
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), zero_channels_(copy.deepcopy(model), plan)(x))


class GroupNormNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.gn = nn.GroupNorm(4, 16)
        self.out = nn.Conv2d(16, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(F.relu(self.gn(self.conv(x))))


def test_group_norm_loses_whole_groups_exactly(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = GroupNormNet().eval()
    with torch.no_grad():
        model.gn.weight.uniform_(0.5, 1.5)
        model.gn.bias.uniform_(-0.5, 0.5)
    x = torch.randn(2, 3, 8, 8)
    plan = plan_channels(model, x[:1], ratio=0.25)
    pruned = apply_plan(model, plan).eval()
    assert (pruned.gn.num_groups, pruned.gn.num_channels, pruned.conv.out_channels) == (3, 12, 12)
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), zero_channels_(copy.deepcopy(model), plan)(x))
    loaded = sq.load(sq.save(pruned, tmp_path / "gn.sqz"), model=GroupNormNet())
    assert loaded.gn.num_groups == 3
    with torch.no_grad():
        assert torch.equal(loaded(x), pruned(x))
