"""Hand-written stand-ins for the operation patterns of real architectures (timm, Hugging
Face): squeeze-excitation gates, hard-swish, BatchNorm and Conv2d subclasses with their own
forward, per-channel layer scales. Each prunes, matches the zeroed original exactly, and saves
and loads into a fresh instance."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import squeezer as sq
from helpers import bn_statistics_
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
    return bn_statistics_(model, seed=0)


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
    """ConvNeXt-style learned per-channel scale, read directly by the forward."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.gamma = nn.Parameter(torch.rand(8) + 0.5)
        self.out = nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.conv(x).mul(self.gamma.reshape(1, -1, 1, 1)))


def test_a_per_channel_parameter_is_pruned_with_its_channels(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = LayerScale().eval()
    x = torch.randn(2, 3, 8, 8)
    graph = sq.surgery.ChannelGraph(model, x[:1])
    assert graph.warnings == []
    plan = plan_channels(model, x[:1], ratio=0.5)
    pruned = apply_plan(model, plan).eval()
    assert pruned.conv.out_channels == 4 and pruned.gamma.shape == (4,)
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), zero_channels_(copy.deepcopy(model), plan)(x))
    loaded = sq.load(sq.save(pruned, tmp_path / "ls.sqz"), model=LayerScale())
    with torch.no_grad():
        assert torch.equal(loaded(x), pruned(x))


class ConvNeXtBlock(nn.Module):
    """As timm writes it: depthwise conv, permute to channels-last, LayerNorm over the
    channels, an MLP of Linear layers on a 4-D tensor, permute back, layer scale, residual."""

    def __init__(self, c: int = 8) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, c, 2, stride=2)
        self.dw = nn.Conv2d(c, c, 3, padding=1, groups=c)
        self.norm = nn.LayerNorm(c)
        self.fc1 = nn.Linear(c, 4 * c)
        self.fc2 = nn.Linear(4 * c, c)
        self.gamma = nn.Parameter(torch.rand(c) + 0.5)
        self.head = nn.Linear(c, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        y = self.dw(x).permute(0, 2, 3, 1)
        y = self.fc2(F.gelu(self.fc1(self.norm(y)))).permute(0, 3, 1, 2)
        x = x + y.mul(self.gamma.reshape(1, -1, 1, 1))
        return self.head(x.mean((2, 3)))


def test_channels_last_blocks_with_layer_norm_prune(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = ConvNeXtBlock().eval()
    x = torch.randn(2, 3, 8, 8)
    graph = sq.surgery.ChannelGraph(model, x[:1])
    assert graph.warnings == [] and graph.inexact  # LayerNorm statistics span the channels
    plan = plan_channels(model, x[:1], ratio=0.5)
    pruned = apply_plan(model, plan).eval()
    assert (pruned.stem.out_channels, pruned.fc1.out_features) == (4, 16)
    assert pruned.norm.normalized_shape == (4,) and pruned.gamma.shape == (4,)
    with torch.no_grad():
        assert pruned(x).shape == (2, 3)
    loaded = sq.load(sq.save(pruned, tmp_path / "cnx.sqz"), model=ConvNeXtBlock())
    with torch.no_grad():
        assert torch.equal(loaded(x), pruned(x))


def test_hidden_units_between_two_linear_layers_on_a_sequence_prune_exactly() -> None:
    torch.manual_seed(0)
    model = ConvNeXtBlock().eval()
    x = torch.randn(2, 3, 8, 8)
    plan = plan_channels(model, x[:1], ratio=0.5, ignored_layers=("stem",))
    assert plan.groups == [{"layers": ["fc1"], "channels": 32, "kept": 16}]
    pruned = apply_plan(model, plan).eval()
    with torch.no_grad():  # hidden units only: no LayerNorm statistics change
        torch.testing.assert_close(pruned(x), zero_channels_(copy.deepcopy(model), plan)(x))


class GroupedConvNet(nn.Module):
    """A RegNet/ResNeXt-style bottleneck: 1x1, grouped 3x3, 1x1."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 16, 1)
        self.bn = nn.BatchNorm2d(16)
        self.b = nn.Conv2d(16, 16, 3, padding=1, groups=4)
        self.c = nn.Conv2d(16, 5, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c(F.relu(self.b(F.relu(self.bn(self.a(x))))))


def test_grouped_convolutions_keep_their_groups_and_narrow_each_exactly(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = _randomize(GroupedConvNet())
    x = torch.randn(2, 3, 8, 8)
    plan = plan_channels(model, x[:1], ratio=0.5)
    pruned = apply_plan(model, plan).eval()
    assert (pruned.b.groups, pruned.b.in_channels, pruned.b.out_channels) == (4, 8, 8)
    assert pruned.a.out_channels == 8 and pruned.c.in_channels == 8
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), zero_channels_(copy.deepcopy(model), plan)(x))
    loaded = sq.load(sq.save(pruned, tmp_path / "g.sqz"), model=GroupedConvNet())
    with torch.no_grad():
        assert torch.equal(loaded(x), pruned(x))


class TokenNet(nn.Module):
    """ViT-style embedding: patches flattened and transposed to tokens, a class token
    concatenated in front, a position embedding added, a class token read back."""

    def __init__(self, c: int = 8) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, c, 4, stride=4)
        self.cls = nn.Parameter(torch.randn(1, 1, c))
        self.pos = nn.Parameter(torch.randn(1, 5, c))
        self.fc = nn.Linear(c, c)
        self.head = nn.Linear(c, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        x = x + F.gelu(self.fc(x))
        return self.head(x[:, 0])


def test_token_sequences_prune_exactly_with_their_embeddings(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = TokenNet().eval()
    x = torch.randn(2, 3, 8, 8)
    graph = sq.surgery.ChannelGraph(model, x[:1])
    assert graph.warnings == []
    plan = plan_channels(model, x[:1], ratio=0.5)
    pruned = apply_plan(model, plan).eval()
    assert pruned.patch.out_channels == 4 and pruned.cls.shape == (1, 1, 4)
    assert pruned.pos.shape == (1, 5, 4) and pruned.head.in_features == 4
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), zero_channels_(copy.deepcopy(model), plan)(x))
    loaded = sq.load(sq.save(pruned, tmp_path / "t.sqz"), model=TokenNet())
    with torch.no_grad():
        assert torch.equal(loaded(x), pruned(x))


class DenseNet(nn.Module):
    """DenseNet-style: each layer reads the concatenation of all earlier outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.l1 = nn.Conv2d(8, 4, 3, padding=1)
        self.l2 = nn.Conv2d(12, 4, 3, padding=1)
        self.out = nn.Conv2d(16, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [self.stem(x)]
        feats.append(F.relu(self.l1(torch.cat(feats, 1))))
        feats.append(F.relu(self.l2(torch.cat(feats, 1))))
        return self.out(torch.cat(feats, 1))


def test_concatenated_lists_prune_exactly() -> None:
    torch.manual_seed(0)
    model = DenseNet().eval()
    x = torch.randn(2, 3, 8, 8)
    plan = plan_channels(model, x[:1], ratio=0.5)
    pruned = apply_plan(model, plan).eval()
    assert (pruned.stem.out_channels, pruned.l1.out_channels, pruned.l2.in_channels) == (4, 2, 6)
    assert pruned.out.in_channels == 8
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), zero_channels_(copy.deepcopy(model), plan)(x))


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


def test_both_tracers_see_the_same_groups() -> None:
    torch.manual_seed(0)
    model = _randomize(Patterns())
    x = torch.randn(1, 3, 12, 12)
    plans = {t: sq.surgery.ChannelGraph(model, x, tracer=t) for t in ("export", "fx")}
    assert {t: g.tracer for t, g in plans.items()} == {"export": "export", "fx": "fx"}
    groups = {
        t: sorted((sorted(k), len(v)) for k, v in sq.surgery.coupled_groups(g).items())
        for t, g in plans.items()
    }
    assert groups["export"] == groups["fx"] and groups["fx"]


def test_a_model_neither_tracer_follows_gets_an_error_naming_both() -> None:
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.sum() > 0:  # data-dependent control flow
                return self.conv(x)
            return -self.conv(x)

    with pytest.raises(sq.surgery.SurgeryError, match=r"torch\.export failed.*torch\.fx failed"):
        sq.surgery.ChannelGraph(Branchy(), torch.randn(1, 3, 4, 4))
    with pytest.raises(sq.errors.ConfigError, match="tracer"):
        sq.pruning.ChannelPruning(tracer="jit")
