"""CSR sparse execution of pruned fc layers."""

from __future__ import annotations

import torch
from torch import nn

import squeezer as sq
from squeezer.pruning import Magnitude, SparseLinear, prune_, sparse_copy, sparsify_


def test_sparse_linear_matches_dense() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(50, 20)
    with torch.no_grad():
        layer.weight[torch.rand_like(layer.weight) < 0.9] = 0
    sparse = SparseLinear.from_linear(layer)
    for shape in [(1, 50), (7, 50), (2, 3, 50)]:
        x = torch.randn(*shape)
        torch.testing.assert_close(sparse(x), layer(x), rtol=1e-5, atol=1e-5)


def test_sparsify_only_sparse_layers_and_measure_counts_them() -> None:
    model = sq.models.create("lenet300")
    prune_(model, Magnitude(per_layer={"fc1": 0.9, "fc2": 0.2}))
    x = torch.randn(3, 1, 28, 28)
    y = model(x)
    copy = sparse_copy(model)
    assert isinstance(copy.fc1, SparseLinear) and type(copy.fc2) is nn.Linear
    torch.testing.assert_close(copy(x), y, rtol=1e-5, atol=1e-5)
    m = sq.measure(copy, x[:1], latency=False)
    assert m.params == 266_610
    assert m.nonzero_params == sq.measure(model, x[:1], latency=False).nonzero_params
    rows = {r.name: r for r in m.layers}
    assert rows["fc1"].flops == 2 * copy.fc1.weight.values().numel()


def test_load_sparse(tmp_path) -> None:
    model = sq.models.create("lenet300")
    prune_(model, Magnitude(sparsity=0.9))
    path = sq.save(model, tmp_path / "m.sqz")
    loaded = sq.load(path, sparse=True)
    assert all(isinstance(getattr(loaded, n), SparseLinear) for n in ("fc1", "fc2", "fc3"))
    assert sparsify_(sq.load(path), min_sparsity=0.95) == []


def test_sparse_linear_copies_and_exports_as_dense(tmp_path) -> None:
    import copy as copy_module

    model = sq.models.create("lenet300")
    prune_(model, Magnitude(sparsity=0.9))
    sparse = sparse_copy(model)
    assert sparse.fc1.weight.col_indices().dtype == torch.int32  # the fast MKL path
    twin = copy_module.deepcopy(sparse)
    assert isinstance(twin.fc1, SparseLinear)
    assert twin.fc1.weight.values().data_ptr() != sparse.fc1.weight.values().data_ptr()
    x = torch.randn(4, 1, 28, 28)
    torch.testing.assert_close(twin(x), model(x), rtol=1e-5, atol=1e-5)
    report = sq.export(sparse, x, tmp_path / "m.onnx")
    assert report.max_abs_diff < 1e-4
    assert isinstance(sparse.fc1, SparseLinear)  # the model itself is left sparse
