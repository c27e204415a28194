"""Per-layer converters: exact at full rank, error falling with rank, planted structure found."""

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from squeezer.factorization import (
    CP,
    SVD,
    Bicluster,
    LowRankBN,
    Monochromatic,
    Separable,
    TensorTrain,
    Tucker,
    parse_rank,
)

CONVS = [
    dict(in_channels=6, out_channels=8, kernel_size=3, padding=1),
    dict(in_channels=4, out_channels=6, kernel_size=(3, 5), stride=2, padding=(1, 2), bias=False),
    dict(in_channels=4, out_channels=4, kernel_size=3, dilation=2, padding=2, stride=(1, 2)),
]


def _conv(kwargs):
    torch.manual_seed(0)
    return nn.Conv2d(**kwargs).double().eval()


def _out(module, x):
    with torch.no_grad():
        return module.eval()(x)


@pytest.mark.parametrize("method", [Separable, LowRankBN, Tucker])
@pytest.mark.parametrize("kwargs", CONVS)
def test_full_rank_conv_decompositions_reproduce_the_layer(method, kwargs):
    conv = _conv(kwargs)
    x = torch.randn(2, conv.in_channels, 11, 13, dtype=torch.float64)
    block = method(rank=1.0).convert(conv, parse_rank(1.0)).block
    torch.testing.assert_close(_out(block, x), _out(conv, x))


def test_full_rank_svd_and_tt_reproduce_a_linear():
    torch.manual_seed(0)
    lin = nn.Linear(60, 24).double()
    x = torch.randn(4, 60, dtype=torch.float64)
    for method in (SVD(), TensorTrain()):
        block = method.convert(lin, parse_rank(1.0)).block
        torch.testing.assert_close(_out(block, x), _out(lin, x))


def test_bicluster_at_full_rank_reproduces_the_layer():
    conv = _conv(dict(in_channels=8, out_channels=6, kernel_size=3, padding=1))
    x = torch.randn(2, 8, 9, 9, dtype=torch.float64)
    block = Bicluster(in_groups=2, out_groups=3).convert(conv, parse_rank(1.0)).block
    torch.testing.assert_close(_out(block, x), _out(conv, x))


def _errors(method, module, ranks):
    errs = []
    for r in ranks:
        conv = method.convert(module, parse_rank(r))
        w = module.weight.detach()
        errs.append(float((conv.approx_weight.reshape(w.shape) - w).norm() / w.norm()))
    return errs


@pytest.mark.parametrize(
    ("method", "ranks"),
    [
        (Separable(), [1, 4, 8, 18]),
        (Tucker(), [0.25, 0.5, 0.75, 1.0]),
        (CP(n_iter_max=100), [2, 8, 24, 48]),
        (Bicluster(in_groups=2, out_groups=2), [1, 3, 6, 9]),
    ],
)
def test_conv_error_falls_as_rank_rises(method, ranks):
    conv = _conv(dict(in_channels=6, out_channels=8, kernel_size=3, padding=1))
    errs = _errors(method, conv, ranks)
    assert all(a >= b - 1e-9 for a, b in itertools.pairwise(errs)), errs
    assert errs[0] > 0.2 and errs[-1] < 0.5 * errs[0]


def test_block_outputs_match_the_reported_approximate_weight():
    """The block computes the convolution with approx_weight, for every conv method."""
    conv = _conv(dict(in_channels=6, out_channels=8, kernel_size=3, padding=1, stride=2))
    x = torch.randn(2, 6, 10, 10, dtype=torch.float64)
    for method, rank in [
        (Separable(), 3), (LowRankBN(), 3), (Tucker(), 0.5), (CP(n_iter_max=20), 6),
        (Monochromatic(), 3), (Bicluster(in_groups=3, out_groups=2), 2),
    ]:  # fmt: skip
        conv_ = method.convert(conv, parse_rank(rank))
        ref = nn.functional.conv2d(x, conv_.approx_weight, conv.bias, 2, 1)
        torch.testing.assert_close(_out(conv_.block, x), ref, msg=type(method).__name__)


def test_svd_error_falls_and_energy_rank_keeps_energy():
    torch.manual_seed(0)
    lin = nn.Linear(50, 40).double()
    errs = _errors(SVD(), lin, [1, 5, 20, 40])
    assert errs == sorted(errs, reverse=True) and errs[-1] < 1e-10
    s = np.linalg.svd(lin.weight.detach().numpy(), compute_uv=False)
    (r,) = SVD().convert(lin, parse_rank("energy:0.8")).ranks
    kept = (s[:r] ** 2).sum() / (s**2).sum()
    assert kept >= 0.8 > (s[: r - 1] ** 2).sum() / (s**2).sum()


def test_cp_recovers_a_planted_cp_kernel():
    rng = np.random.default_rng(0)
    factors = [rng.standard_normal((d, 3)) for d in (8, 6, 3, 3)]
    w = np.einsum("ar,br,cr,dr->abcd", *factors)
    conv = nn.Conv2d(6, 8, 3, padding=1).double()
    conv.weight.data = torch.as_tensor(w)
    (err,) = _errors(CP(n_iter_max=500), conv, [3])
    assert err < 1e-6


def test_monochromatic_is_exact_for_planted_colours():
    rng = np.random.default_rng(0)
    colours = rng.standard_normal((2, 3))
    labels = rng.integers(0, 2, 10)
    spatial = rng.standard_normal((10, 9))
    w = np.einsum("nc,ns->ncs", colours[labels], spatial).reshape(10, 3, 3, 3)
    conv = nn.Conv2d(3, 10, 3).double()
    conv.weight.data = torch.as_tensor(w)
    (err,) = _errors(Monochromatic(), conv, [2])
    assert err < 1e-8


def test_targets_meet_the_asked_compression_and_flops():
    conv = _conv(dict(in_channels=32, out_channels=32, kernel_size=3, padding=1))
    for method in (Tucker(), CP(n_iter_max=5), Separable()):
        block = method.convert(conv, parse_rank("compression:4")).block
        params = sum(p.numel() for p in block.parameters() if p.dim() > 1)
        assert params <= conv.weight.numel() / 4
        assert params > conv.weight.numel() / 8  # the largest rank meeting it, not rank 1


def test_tucker_vbmf_finds_planted_channel_ranks():
    rng = np.random.default_rng(0)
    core = rng.standard_normal((5, 3, 3, 3))
    u_out, u_in = rng.standard_normal((48, 5)), rng.standard_normal((40, 3))
    w = np.einsum("abyx,na,cb->ncyx", core, u_out, u_in) + 0.01 * rng.standard_normal(
        (48, 40, 3, 3)
    )
    conv = nn.Conv2d(40, 48, 3).double()
    conv.weight.data = torch.as_tensor(w)
    assert Tucker().convert(conv, parse_rank("vbmf")).ranks == [5, 3]


def test_cp_backends_agree():
    """squeezer's contraction-based ALS and TensorLy's parafac reach similar errors."""
    conv = _conv(dict(in_channels=12, out_channels=10, kernel_size=3))
    w = conv.weight.detach()
    errs = {}
    for backend in ("torch", "tensorly"):
        approx = CP(n_iter_max=60, backend=backend).convert(conv, parse_rank(16)).approx_weight
        errs[backend] = float((approx - w).norm() / w.norm())
    assert abs(errs["torch"] - errs["tensorly"]) < 0.05, errs
