import math

import pytest
import torch
from torch import nn

from squeezer.layers import (
    ChannelSelect,
    SpecError,
    TTLinear,
    build_module,
    module_spec,
    tt_modes,
)


def test_tt_modes_multiply_back():
    for n, d in [(784, 3), (300, 3), (10, 3), (1024, 4), (97, 2)]:
        modes = tt_modes(n, d)
        assert len(modes) == d and math.prod(modes) == n


def test_tt_forward_equals_dense_matrix_rebuilt_from_cores():
    torch.manual_seed(0)
    layer = TTLinear([4, 7, 4], [5, 6, 2], [1, 3, 2, 1]).double()
    # rebuild W element by element from the cores, independently of full_matrix()
    cores = [c.detach() for c in layer.cores]
    w = torch.zeros(60, 112, dtype=torch.float64)
    for row in range(60):
        n1, rest = divmod(row, 12)
        n2, n3 = divmod(rest, 2)
        for col in range(112):
            m1, rest = divmod(col, 28)
            m2, m3 = divmod(rest, 4)
            v = cores[0][:, m1, n1, :] @ cores[1][:, m2, n2, :] @ cores[2][:, m3, n3, :]
            w[row, col] = v.item()
    torch.testing.assert_close(layer.full_matrix().detach(), w)
    x = torch.randn(3, 112, dtype=torch.float64)
    torch.testing.assert_close(layer(x), x @ w.T + layer.bias)


def test_tt_from_linear_is_exact_at_full_rank_and_error_falls_with_rank():
    torch.manual_seed(0)
    lin = nn.Linear(112, 60).double()
    errors = []
    for r in (1, 4, 16, 1000):
        tt = TTLinear.from_linear(lin, r, in_modes=[4, 7, 4], out_modes=[5, 6, 2])
        w = lin.weight.detach()
        errors.append(float((tt.full_matrix().detach() - w).norm() / w.norm()))
    assert errors == sorted(errors, reverse=True)
    assert errors[-1] < 1e-6  # TensorLy's truncated SVD goes through X X^T: ~sqrt(eps)


def test_specs_round_trip_plain_blocks():
    block = nn.Sequential(
        nn.Conv2d(3, 4, (3, 1), stride=(2, 1), padding=(1, 0), bias=False),
        nn.BatchNorm2d(4),
        ChannelSelect([3, 2, 1, 0, 0]),
        nn.Conv2d(5, 6, 1, groups=1),
    )
    spec = module_spec(block)
    rebuilt = build_module(spec)
    rebuilt.load_state_dict(block.state_dict())
    x = torch.randn(2, 3, 8, 8)
    block.eval(), rebuilt.eval()
    torch.testing.assert_close(rebuilt(x), block(x))
    assert module_spec(rebuilt) == spec


def test_specs_refuse_unknown_types_and_bad_arguments():
    with pytest.raises(SpecError, match="cannot describe"):
        module_spec(nn.GRU(3, 4))
    with pytest.raises(SpecError, match="unknown module type"):
        build_module({"type": "os.system", "args": {}})
    with pytest.raises(SpecError, match="invalid arguments"):
        build_module({"type": "Linear", "args": {"in_features": {"x": 1}}})
    with pytest.raises(SpecError, match="cannot build"):
        build_module({"type": "Linear", "args": {"in_features": 3, "nonsense": 1}})
