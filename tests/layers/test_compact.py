"""Compact and transferred filters and efficient blocks: each against the property that
defines it (negated pairs, rotation equivariance and invariance, patches of meta filters,
parameter counts, shuffles and shifts as permutations), and the registered layers rebuilt from
their specs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from squeezer.core.spec import build_module, module_spec
from squeezer.layers.compact import ChannelShuffle as Shuffle
from squeezer.layers.compact import (
    CReLU,
    CyclicPool,
    CyclicRoll,
    CyclicSlice,
    DoublyConv2d,
    EffNetBlock,
    Fire,
    FlattenedConv2d,
    MultiBias,
    P4ConvP4,
    P4ConvZ2,
    P4Pool,
    SeparableConv2d,
    Shift,
    ShiftBlock,
    ShuffleUnit,
    shift_offsets,
)


def _rot(x: torch.Tensor, k: int = 1) -> torch.Tensor:
    return torch.rot90(x, k, dims=(-2, -1))


def _rot_p4(y: torch.Tensor, k: int = 1) -> torch.Tensor:
    """The action of a quarter turn on a p4 feature map: rotate, shift the orientations."""
    return torch.roll(_rot(y, k), k, dims=2)


def test_crelu_gives_the_negated_pair_and_multibias_each_bias():
    x = torch.randn(2, 3, 4, 4)
    torch.testing.assert_close(CReLU()(x), torch.cat([x.relu(), (-x).relu()], 1))
    mb = MultiBias(3, biases=4)
    y = mb(x)
    assert y.shape == (2, 12, 4, 4)
    torch.testing.assert_close(y[:, 1 * 4 + 2], (x[:, 1] + mb.bias[1, 2]).relu())


@pytest.mark.parametrize("k", [1, 2, 3])
def test_p4_convolutions_are_equivariant_and_their_pooling_invariant_to_rotation(k):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 9, 9, dtype=torch.float64)
    lift, group = P4ConvZ2(3, 4).double(), P4ConvP4(4, 5, kernel_size=3).double()
    y, y_rot = lift(x), lift(_rot(x, k))
    torch.testing.assert_close(y_rot, _rot_p4(y, k))
    u, u_rot = group(y), group(y_rot)
    torch.testing.assert_close(u_rot, _rot_p4(u, k))
    pooled = P4Pool()(u)
    torch.testing.assert_close(P4Pool()(u_rot), _rot(pooled, k))
    invariant = pooled.mean((2, 3))
    torch.testing.assert_close(P4Pool()(u_rot).mean((2, 3)), invariant)


def test_p4_group_conv_breaks_equivariance_if_the_orientations_are_not_cycled():
    """The test above can fail: without the orientation shift the layer is not equivariant."""
    torch.manual_seed(0)
    x = torch.randn(1, 2, 4, 7, 7, dtype=torch.float64)
    group = P4ConvP4(2, 2).double()
    turned = torch.roll(_rot(x), 1, dims=2)
    assert torch.allclose(group(turned), _rot_p4(group(x)))
    assert not torch.allclose(group(_rot(x)), _rot_p4(group(x)))


def test_cyclic_slice_roll_pool():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    sliced = CyclicSlice()(x)
    assert sliced.shape == (8, 3, 6, 6)
    torch.testing.assert_close(sliced[2:4], _rot(x, 1))
    rolled = CyclicRoll()(sliced)  # identity features: every block aligned with the first
    assert rolled.shape == (8, 12, 6, 6)
    for j in range(4):
        torch.testing.assert_close(rolled[:, 3 * j : 3 * j + 3], sliced)
    conv = nn.Conv2d(3, 4, 3, padding=1).double()

    def stack(inp: torch.Tensor) -> torch.Tensor:
        return CyclicRoll()(conv(CyclicSlice()(inp)))

    # a quarter turn of the input cycles the four rotations' blocks of the batch
    torch.testing.assert_close(stack(_rot(x)), torch.roll(stack(x), -2, dims=0))
    net = lambda inp: CyclicPool("rms")(stack(inp).mean((2, 3)))  # noqa: E731
    torch.testing.assert_close(net(_rot(x, 3)), net(x))
    with pytest.raises(ValueError, match="square"):
        CyclicRoll()(torch.randn(4, 1, 3, 5))


def test_doubly_conv_filters_are_the_patches_of_meta_filters():
    torch.manual_seed(0)
    layer = DoublyConv2d(2, meta=3, kernel_size=3, meta_size=5, pool=1, padding=1)
    f = layer.filters()
    assert f.shape == (3 * 9, 2, 3, 3)
    torch.testing.assert_close(f[1 * 9 + 2 * 3 + 1], layer.weight[1, :, 2:5, 1:4])
    x = torch.randn(2, 2, 7, 7)
    ref = nn.functional.conv2d(x, f, layer.bias, padding=1)
    torch.testing.assert_close(layer(x), ref)
    pooled = DoublyConv2d(2, meta=3, kernel_size=3, meta_size=6, pool=2, padding=1)
    pooled.weight.data.copy_(torch.randn_like(pooled.weight))
    y = pooled(x)  # 4x4 patches pooled 2x2: 4 channels per meta filter
    assert y.shape == (2, 12, 7, 7)
    full = nn.functional.conv2d(x, pooled.filters(), padding=1).view(2, 3, 4, 4, 7, 7)
    torch.testing.assert_close(y[:, 4 * 1 + 3], full[:, 1, 2:4, 2:4].amax((1, 2)))
    assert pooled.weight.numel() == 3 * 6 * 6 * 2  # 12 filters of 3x3x2 from 216 weights
    with pytest.raises(ValueError, match="multiple of pool=3"):
        DoublyConv2d(2, meta=3, kernel_size=3, meta_size=6, pool=3)


def _params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_efficient_blocks_have_their_shapes_and_parameter_counts():
    x = torch.randn(2, 24, 8, 8)
    assert Fire(24, 6, 16, 16)(x).shape == (2, 32, 8, 8)
    assert _params(Fire(24, 6, 16, 16)) == 24 * 6 + 6 + 6 * 16 + 16 + 6 * 16 * 9 + 16
    sep = SeparableConv2d(24, 32, stride=2, bn=False, relu=False)
    assert sep(x).shape == (2, 32, 4, 4)
    assert _params(sep) == 24 * 9 + 24 + 24 * 32 + 32
    flat = FlattenedConv2d(24, 32, kernel_size=5)
    assert flat(x).shape == (2, 32, 8, 8) and _params(flat) == 24 * 32 + 2 * 5 * 32 + 32
    assert ShuffleUnit(24, 24, groups=3)(x).shape == (2, 24, 8, 8)
    assert ShuffleUnit(24, 48, groups=3, stride=2)(x).shape == (2, 48, 4, 4)
    assert EffNetBlock(24, 32)(x).shape == (2, 32, 4, 4)
    assert ShiftBlock(24, 24)(x).shape == (2, 24, 8, 8)
    assert ShiftBlock(24, 48, stride=2)(x).shape == (2, 48, 4, 4)
    with pytest.raises(ValueError, match="groups=3 must divide the out channels 25"):
        ShuffleUnit(24, 49, groups=3, stride=2)


def test_channel_shuffle_interleaves_the_groups():
    x = torch.arange(6.0).view(1, 6, 1, 1)
    assert Shuffle(2)(x).flatten().tolist() == [0, 3, 1, 4, 2, 5]
    with pytest.raises(ValueError, match="do not split into 4 groups"):
        Shuffle(4)(x)


def test_shift_moves_each_channel_by_its_offset_with_zeros_in():
    offsets = shift_offsets(10, 3)
    assert len(offsets) == 10 and offsets.count((0, 0)) == 2  # 8 moves, the rest stay
    x = torch.randn(1, 10, 5, 6)
    y = Shift(10)(x)
    for c, (dy, dx) in enumerate(offsets):
        for i in range(5):
            for j in range(6):
                si, sj = i - dy, j - dx
                inside = 0 <= si < 5 and 0 <= sj < 6
                assert float(y[0, c, i, j]) == (float(x[0, c, si, sj]) if inside else 0.0)
    assert _params(Shift(10)) == 0


@pytest.mark.parametrize(
    "layer",
    [
        CReLU(),
        MultiBias(3, 2),
        CyclicSlice(),
        CyclicRoll(),
        CyclicPool("max"),
        P4ConvZ2(3, 2),
        P4ConvP4(2, 2),
        P4Pool("mean"),
        DoublyConv2d(3, 2, meta_size=4, pool=2),
        Shuffle(3),
        Shift(6, 5),
    ],
)
def test_registered_layers_rebuild_from_their_specs(layer):
    rebuilt = build_module(module_spec(layer))
    assert type(rebuilt) is type(layer)
    rebuilt.load_state_dict(layer.state_dict())
    assert module_spec(rebuilt) == module_spec(layer)
