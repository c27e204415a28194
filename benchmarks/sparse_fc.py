"""Sparse execution of a pruned AlexNet-sized fc layer (9216 -> 4096 at 9% density).

    python benchmarks/sparse_fc.py                     # about 5 minutes on 2 cores
    python benchmarks/sparse_fc.py --batches 1,256 --no-own-kernel

Deep Compression keeps 9% of AlexNet's fc6 weights and reports about 3x at batch 1 on a CPU
with a sparse matrix-vector product. Every path below computes the same layer (weights pruned
by magnitude to 9%, random); each is timed alternately against the dense layer holding the
same pruned weights, in one run, medians, at each batch size:

- dense: ``nn.Linear`` (eager), and the same layer on torch.compile and ONNX Runtime;
- ``SparseLinear`` (squeezer's CSR layer, 32-bit indices, MKL through ``torch.sparse``), eager
  and torch.compile; and CSR with PyTorch's default 64-bit indices, for reference;
- BSR (4 x 4 blocks): only for a weight pruned in whole 4 x 4 blocks to the same density (a
  different pruning pattern; an unstructured 9% mask leaves almost every block non-zero);
- ONNX Runtime on the exported SparseLinear: the file holds the dense layer (ONNX Runtime's
  CPU provider has no CSR matrix product for standard ONNX), so it is the dense time;
- own kernel (``--own-kernel``, default on): a 60-line C++ CSR kernel (16-bit column indices,
  OpenMP over rows, batch tiles of 64), built with ``torch.utils.cpp_extension`` here. An
  experiment to see how far the library kernels are from what this CPU allows; squeezer does
  not ship it.

Bytes read per call (weights and indices) are reported: at batch 1 the layer is memory-bound,
so the byte ratio is the speedup to expect. Writes results/sparse_fc.{json,md}.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

import squeezer as sq
from harness import elapsed, provenance, write_report
from squeezer.pruning import SparseLinear

IN, OUT = 9216, 4096

KERNEL = r"""
#include <torch/extension.h>
#include <cstdint>
// y[B, O] = x[B, I] W^T with W in CSR: rowptr int32 [O+1], col uint16 [nnz], val float [nnz]
torch::Tensor csr_linear(torch::Tensor rowptr, torch::Tensor col, torch::Tensor val,
                         torch::Tensor x, int64_t out_features) {
  const int64_t B = x.size(0);
  const int32_t* rp = rowptr.data_ptr<int32_t>();
  const uint16_t* ci = reinterpret_cast<const uint16_t*>(col.data_ptr<int16_t>());
  const float* v = val.data_ptr<float>();
  if (B == 1) {
    auto y = torch::empty({1, out_features}, x.options());
    const float* X = x.data_ptr<float>();
    float* Y = y.data_ptr<float>();
    #pragma omp parallel for schedule(static)
    for (int64_t o = 0; o < out_features; ++o) {
      float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      int32_t k = rp[o];
      const int32_t e = rp[o + 1];
      for (; k + 4 <= e; k += 4) {
        s0 += v[k] * X[ci[k]]; s1 += v[k + 1] * X[ci[k + 1]];
        s2 += v[k + 2] * X[ci[k + 2]]; s3 += v[k + 3] * X[ci[k + 3]];
      }
      for (; k < e; ++k) s0 += v[k] * X[ci[k]];
      Y[o] = (s0 + s1) + (s2 + s3);
    }
    return y;
  }
  auto xt = x.t().contiguous();  // [I, B]: one input feature's batch is contiguous
  auto yt = torch::empty({out_features, B}, x.options());
  const float* X = xt.data_ptr<float>();
  float* Y = yt.data_ptr<float>();
  constexpr int64_t TB = 64;
  #pragma omp parallel for schedule(dynamic, 16) collapse(2)
  for (int64_t o = 0; o < out_features; ++o) {
    for (int64_t b0 = 0; b0 < B; b0 += TB) {
      const int64_t nb = std::min(TB, B - b0);
      float acc[TB] = {0};
      for (int32_t k = rp[o]; k < rp[o + 1]; ++k) {
        const float w = v[k];
        const float* xr = X + static_cast<int64_t>(ci[k]) * B + b0;
        if (nb == TB) {
          #pragma omp simd
          for (int64_t j = 0; j < TB; ++j) acc[j] += w * xr[j];
        } else {
          for (int64_t j = 0; j < nb; ++j) acc[j] += w * xr[j];
        }
      }
      for (int64_t j = 0; j < nb; ++j) Y[o * B + b0 + j] = acc[j];
    }
  }
  return yt.t();
}
"""


class Call(nn.Module):
    """A function of the input, as a module for the timer."""

    def __init__(self, fn: Any) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


class OwnKernel(nn.Module):
    def __init__(self, ext: Any, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        csr = weight.to_sparse_csr()
        self.ext = ext
        self.rowptr = csr.crow_indices().to(torch.int32)
        cols = csr.col_indices().to(torch.int32)
        self.col = torch.where(cols >= 2**15, cols - 2**16, cols).to(torch.int16)  # as uint16
        self.val = csr.values().contiguous()
        self.bias = bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ext.csr_linear(self.rowptr, self.col, self.val, x, OUT) + self.bias


def csr64(weight: torch.Tensor, bias: torch.Tensor) -> nn.Module:
    w = weight.to_sparse_csr()
    return Call(lambda x: (w @ x[0]).unsqueeze(0) + bias if x.shape[0] == 1
                else torch.sparse.mm(w, x.t()).t() + bias)  # fmt: skip


def block_pruned(weight: torch.Tensor, density: float, block: int) -> torch.Tensor:
    """``weight`` pruned in whole ``block`` x ``block`` tiles, keeping the largest-L1 tiles."""
    o, i = weight.shape
    tiles = weight.abs().reshape(o // block, block, i // block, block).sum((1, 3))
    keep = tiles >= tiles.flatten().kthvalue(int((1 - density) * tiles.numel())).values
    mask = keep.repeat_interleave(block, 0).repeat_interleave(block, 1)
    return weight * mask


def bsr_layer(weight: torch.Tensor, bias: torch.Tensor, block: int) -> nn.Module:
    w = weight.to_sparse_bsr((block, block))
    return Call(lambda x: (w @ x.t().contiguous()).t() + bias)


def own_kernel() -> Any:
    from torch.utils.cpp_extension import load_inline

    return load_inline(
        "squeezer_bench_csr", cpp_sources=KERNEL, functions=["csr_linear"],
        extra_cflags=["-O3", "-march=native", "-fopenmp"], extra_ldflags=["-fopenmp"],
    )  # fmt: skip


def csr_bytes(nnz: int, rows: int, index_bytes: int) -> int:
    return nnz * (4 + index_bytes) + (rows + 1) * index_bytes


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dense_layer = nn.Linear(IN, OUT).eval()
    unpruned = dense_layer.weight.detach().clone()
    with torch.no_grad():
        w = dense_layer.weight
        cut = w.abs().flatten().kthvalue(int((1 - args.density) * w.numel())).values
        w.mul_(w.abs() > cut)
    weight, bias = dense_layer.weight.detach(), dense_layer.bias.detach()
    nnz = int(torch.count_nonzero(weight))
    density = nnz / weight.numel()
    x = torch.randn(1, IN)
    sparse = SparseLinear.from_linear(dense_layer).eval()
    with torch.no_grad():
        ref = dense_layer(x)
    paths: dict[str, tuple[nn.Module, nn.Module, int]] = {}  # name: (dense, candidate, bytes)
    dense_bytes = weight.numel() * 4
    paths["CSR, 32-bit indices (SparseLinear), eager"] = (
        dense_layer, sparse, csr_bytes(nnz, OUT, 4))  # fmt: skip
    paths["CSR, 64-bit indices, eager"] = (dense_layer, csr64(weight, bias), csr_bytes(nnz, OUT, 8))
    prepare_s: dict[str, list[float]] = {}
    for backend in ("compile", "onnxruntime"):
        d = sq.deploy.prepare(dense_layer, backend, x, args.threads)
        s = sq.deploy.prepare(sparse, backend, x, args.threads)
        name = f"SparseLinear on {backend}" + (
            " (the file holds the dense layer)" if backend == "onnxruntime" else "")  # fmt: skip
        nbytes = dense_bytes if backend == "onnxruntime" else csr_bytes(nnz, OUT, 4)
        paths[name] = (d.module, s.module, nbytes)
        prepare_s[name] = [d.seconds, s.seconds]
    blocked = block_pruned(unpruned, args.density, 4)
    blocked_dense = nn.Linear(IN, OUT).eval()
    with torch.no_grad():
        blocked_dense.weight.copy_(blocked)
        blocked_dense.bias.copy_(bias)
    block_nnz = int(torch.count_nonzero(blocked))
    bsr_bytes = block_nnz * 4 + (block_nnz // 16) * 8
    paths["BSR 4x4 (block-pruned weight), eager"] = (
        blocked_dense, bsr_layer(blocked, bias, 4), bsr_bytes)  # fmt: skip
    kernel_error = None
    if args.own_kernel:
        try:
            print(f"[{elapsed():5.0f}s] building the C++ kernel", flush=True)
            ext = own_kernel()
            paths["own C++ kernel (16-bit indices), eager"] = (
                dense_layer,
                OwnKernel(ext, weight, bias),
                nnz * (4 + 2) + (OUT + 1) * 4,
            )
        except Exception as exc:  # a missing compiler is a result, not a crash
            kernel_error = str(exc).strip().splitlines()[0][:200]
            print(f"own kernel not built: {kernel_error}", flush=True)
    rows = []
    for name, (d, s, nbytes) in paths.items():
        with torch.no_grad():
            want = blocked_dense(x) if "BSR" in name else ref
            err = float((s(x) - want).abs().max())
        for batch in [int(b) for b in args.batches.split(",")]:
            lat = sq.analysis.time_models(
                [d, s], x, batch, args.threads, min_run_time=args.min_run_time,
                min_rounds=args.rounds,
            )  # fmt: skip
            row = {
                "path": name,
                "batch": batch,
                "threads": args.threads,
                "dense_ms": lat[0].median_ms,
                "sparse_ms": lat[1].median_ms,
                "speedup": lat[0].median_ms / lat[1].median_ms,
                "weight_bytes": nbytes,
                "dense_weight_bytes": dense_bytes,
                "max_abs_diff": err,
                "prepare_seconds": prepare_s.get(name),
            }
            rows.append(row)
            print(
                f"[{elapsed():5.0f}s] {name:45} batch {batch:4}: dense {row['dense_ms']:8.3f} ms,"
                f" sparse {row['sparse_ms']:8.3f} ms, {row['speedup']:.2f}x", flush=True,
            )  # fmt: skip
    return {
        "rows": rows,
        "density": density,
        "nnz": nnz,
        "block_density": block_nnz / weight.numel(),
        "own_kernel_error": kernel_error,
    }


def to_markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Sparse fc layer: 9216 -> 4096 at 9% density",
        "",
        f"Command: `{report['command']}`  ",
        f"Date: {report['date']}; torch {report['torch']}, {report['threads']} threads; "
        f"density {report['density']:.4f} ({report['nnz']:,} non-zeros, magnitude-pruned random "
        f"weights); total {report['seconds'] / 60:.1f} min.",
        "",
        "Each sparse path timed alternately with the dense layer holding the same pruned weights "
        "on the same backend, one run, medians. Weight bytes: values and indices read per call "
        f"(dense: {report['rows'][0]['dense_weight_bytes'] / 1e6:.1f} MB). Target (issue 11): "
        ">= 3x at batch 1.",
        "",
        "| path | batch | dense ms | sparse ms | speedup | weight MB | max diff |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['path']} | {r['batch']} | {r['dense_ms']:.3f} | {r['sparse_ms']:.3f} | "
            f"{r['speedup']:.2f}x | {r['weight_bytes'] / 1e6:.1f} | {r['max_abs_diff']:.1e} |"
        )
    lines += ["", "Lowest latency per batch size (unstructured weight):", ""]
    for batch in sorted({r["batch"] for r in report["rows"]}):
        same = [r for r in report["rows"] if r["batch"] == batch and "BSR" not in r["path"]]
        best = min(same, key=lambda r: r["sparse_ms"])
        verdict = ("met" if best["speedup"] >= 3 else "MISSED") if batch == 1 else ""
        lines.append(
            f"- batch {batch}: {best['path']}, {best['sparse_ms']:.3f} ms, "
            f"{best['speedup']:.2f}x its dense baseline{': ' + verdict if verdict else ''}"
        )
    if report.get("own_kernel_error"):
        lines += ["", f"Own kernel not built: {report['own_kernel_error']}"]
    lines += [
        "",
        f"BSR rows use a different weight: pruned in whole 4x4 blocks to "
        f"{report['block_density']:.3f} density, against the dense layer holding that weight.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--density", type=float, default=0.09)
    parser.add_argument("--batches", default="1,8,32,256")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7, help="timed blocks per model, at least")
    parser.add_argument("--min-run-time", type=float, default=0.5)
    parser.add_argument("--own-kernel", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--out", default="sparse_fc", help="results/NAME.{json,md}")
    args = parser.parse_args()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
        report = {**provenance("sparse_fc.py"), **run(args)}
    report["seconds"] = elapsed()
    print(write_report(args.out, report, to_markdown))


if __name__ == "__main__":
    main()
