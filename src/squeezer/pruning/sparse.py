"""Sparse execution of pruned fully connected layers with PyTorch's CSR kernels.

A pruned weight matrix still costs dense time unless its zeros are skipped. Deep Compression
reports pruned fc layers running about 3x faster on a CPU at batch 1 with a sparse
matrix-vector product; :func:`sparsify_` swaps each sparse enough ``nn.Linear`` for a
:class:`SparseLinear` that multiplies with the weight in CSR form. Whether it is faster on
this machine is measured, not assumed (``benchmarks/deep_compression.py``).
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn

from squeezer.core import baked_copy


def _csr32(dense: Tensor) -> Tensor:
    """``dense`` in CSR form with 32-bit indices: MKL's matrix-vector product runs about 2x
    faster on them than on 64-bit ones (4096 x 9216 at 9% density, batch 1, 2 threads)."""
    with warnings.catch_warnings():  # "sparse CSR support is in beta": we measure it
        warnings.simplefilter("ignore", UserWarning)
        csr = dense.to_sparse_csr()
        if csr.values().numel() >= 2**31:
            return csr
        return torch.sparse_csr_tensor(
            csr.crow_indices().to(torch.int32),
            csr.col_indices().to(torch.int32),
            csr.values(),
            csr.shape,
        )


class SparseLinear(nn.Module):
    """``y = x W^T + b`` with W held as a CSR sparse matrix (inference only).

    Args:
        weight: dense weight ``(out_features, in_features)``; its zeros are dropped.
        bias: optional bias ``(out_features,)``.
    """

    def __init__(self, weight: Tensor, bias: Tensor | None = None) -> None:
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.register_buffer("weight", _csr32(weight.detach()))
        self.bias = (
            None if bias is None else nn.Parameter(bias.detach().clone(), requires_grad=False)
        )

    def __deepcopy__(self, memo: dict) -> SparseLinear:
        # a CSR tensor has no storage for deepcopy to clone; rebuild from the dense form
        return type(self)(self.dense_weight(), self.bias)

    def dense_weight(self) -> Tensor:
        """The weight as a dense matrix (zeros included)."""
        return self.weight.to_dense()

    def export_form(self) -> nn.Linear:
        """What :func:`squeezer.export` writes instead: ONNX has no CSR matrix product that
        ONNX Runtime's CPU provider runs, so the file holds the dense layer."""
        return self.to_linear()

    def to_linear(self) -> nn.Linear:
        """The same layer as a dense ``nn.Linear``."""
        layer = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None)
        with torch.no_grad():
            layer.weight.copy_(self.dense_weight())
            if self.bias is not None:
                layer.bias.copy_(self.bias)
        return layer

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> SparseLinear:
        return cls(linear.weight, linear.bias)

    def forward(self, x: Tensor) -> Tensor:
        flat = x.reshape(-1, self.in_features)
        if flat.shape[0] == 1:  # matrix-vector product: less overhead than a 1-column mm
            out = (self.weight @ flat[0]).unsqueeze(0)
        else:
            out = torch.sparse.mm(self.weight, flat.t()).t()
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        nnz = self.weight.values().numel()
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"density={nnz / (self.in_features * self.out_features):.3f}"
        )


def sparsify_(model: nn.Module, min_sparsity: float = 0.5) -> list[str]:
    """Replace every ``nn.Linear`` at least ``min_sparsity`` zero by a :class:`SparseLinear`.

    Returns:
        The names of the layers replaced.
    """
    replaced = []
    for name, module in list(model.named_modules()):
        if type(module) is not nn.Linear:
            continue
        w = module.weight.detach()
        if 1.0 - float(torch.count_nonzero(w)) / w.numel() < min_sparsity:
            continue
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, SparseLinear.from_linear(module))
        replaced.append(name)
    return replaced


def sparse_copy(model: nn.Module, min_sparsity: float = 0.5) -> nn.Module:
    """A plain copy of ``model`` with its sparse fc layers in CSR form (``model`` untouched)."""
    copy = baked_copy(model)
    sparsify_(copy, min_sparsity)
    return copy.eval()
