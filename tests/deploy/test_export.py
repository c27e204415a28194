"""ONNX export with its check, and the backends latency is timed on."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

import squeezer as sq
from squeezer.cli import main

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


def _lenet5() -> nn.Module:
    torch.manual_seed(0)
    return sq.models.create("lenet5").eval()


X = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(1))


def test_export_writes_a_file_onnx_runtime_agrees_with(tmp_path: Path) -> None:
    model = _lenet5()
    report = sq.export(model, X, tmp_path / "l5.onnx")
    assert (tmp_path / "l5.onnx").stat().st_size == report.bytes > 100_000
    assert report.max_abs_diff < 1e-4 and report.examples == 4 and not report.warnings
    runner = sq.deploy.OnnxRuntimeModule(tmp_path / "l5.onnx")
    with torch.no_grad():  # the batch dimension is dynamic
        torch.testing.assert_close(runner(X[:3]), model(X[:3]), atol=1e-4, rtol=1e-4)
    assert [p.name for p in tmp_path.iterdir()] == ["l5.onnx"]  # no temporary left


def test_compressed_models_export(tmp_path: Path) -> None:
    pruned = sq.prune_channels(_lenet5(), X[:1], ratio=0.5)
    factorized = _lenet5()
    sq.factorize_(factorized, sq.factorization.Tucker(rank=0.5, n_iter_max=2), X[:1])
    shared = _lenet5()
    sq.prune_(shared, sq.pruning.Magnitude(sparsity=0.8))
    sq.quantize_(shared, sq.quantization.KMeansSharing(bits=4))
    for name, model in [("pruned", pruned), ("tucker", factorized), ("shared", shared)]:
        report = sq.export(model, X, tmp_path / f"{name}.onnx")
        assert report.max_abs_diff < 1e-4, name


F = sq.factorization
EVERY_FACTORIZATION = [
    F.SVD(rank=0.5),
    F.Separable(rank=0.5),
    F.LowRankBN(rank=0.5),
    F.Tucker(rank=0.5, n_iter_max=2),
    F.CP(rank=4, n_iter_max=2),
    F.TensorTrain(rank=4),
    F.Monochromatic(rank=2),
    F.Bicluster(in_groups=2, out_groups=2),
    F.Circulant(fit=False),
    F.Fastfood(fit=False),
    F.LDR(rank=2, fit=False),
    F.ACDC(depth=2, fit=False),
]


@pytest.mark.parametrize("config", EVERY_FACTORIZATION, ids=lambda c: c.method)
def test_every_factorization_exports(config: sq.factorization.Factorization, tmp_path) -> None:
    model = _lenet5()
    report = sq.factorize_(model, config, X[:1])
    assert report.converted, config.method  # something was replaced
    exported = sq.export(model, X, tmp_path / "m.onnx")
    assert exported.max_abs_diff < 1e-4, config.method


class _ComplexTwist(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = torch.arange(x.shape[-1], dtype=x.dtype)
        # a real tensor times a complex scalar: the exporter has no form for it
        return (torch.fft.fft(x) * torch.exp(1j * math.pi * k / x.shape[-1])).real


def test_structured_matrices_export_and_others_name_the_operation(tmp_path: Path) -> None:
    x = torch.randn(3, 60)  # not a power of two: the DCT's odd/even split is exercised
    for layer in (
        sq.layers.CirculantLinear(60, 50),
        sq.layers.FastfoodLinear(64, 64),
        sq.layers.LDRLinear(60, 50, rank=2),
        sq.layers.ACDCLinear(60, 50, depth=3),
    ):
        report = sq.export(layer, x if layer.in_features == 60 else torch.randn(3, 64),
                           tmp_path / "s.onnx")  # fmt: skip
        assert report.max_abs_diff < 1e-4, type(layer).__name__
    with pytest.raises(sq.errors.ExportError, match=r"aten\.mul\.Scalar has no ONNX form"):
        sq.export(_ComplexTwist(), x, tmp_path / "complex.onnx")
    assert not (tmp_path / "complex.onnx").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["s.onnx"]


def test_check_reports_top1_agreement_and_both_accuracies(tmp_path: Path) -> None:
    model = _lenet5()
    batches = [(X, torch.tensor([0, 1, 2, 3]))]
    report = sq.export(model, X, tmp_path / "m.onnx", check=batches)
    assert report.check_examples == 4 and report.top1_agreement == 1.0
    assert report.top1_pytorch == report.top1_onnx
    assert "top-1 agreement 100.00%" in report.format()


def test_a_file_that_is_not_onnx_is_one_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(sq.errors.ExportError, match="not a loadable ONNX model"):
        sq.deploy.OnnxRuntimeModule(bad)


def test_measure_on_onnx_runtime_times_both_models_there() -> None:
    model = _lenet5()
    small = sq.prune_channels(model, X[:1], ratio=0.5)
    m = sq.measure(
        small, X[:1], baseline=model, batch_sizes=(1, 8), threads=(1,), backend="onnxruntime",
        per_layer_latency=False, min_run_time=0.01,
    )  # fmt: skip
    assert m.backend.startswith("ONNX Runtime")
    assert len(m.prepare_seconds) == 2 and all(s > 0 for s in m.prepare_seconds)
    assert [(s["batch_size"], s["threads"]) for s in m.comparison.speedup] == [(1, 1), (8, 1)]
    assert m.to_dict()["prepare_seconds"] == m.prepare_seconds
    with pytest.raises(sq.errors.BackendError, match="unknown backend 'tvm'"):
        sq.measure(small, X[:1], backend="tvm")


@pytest.mark.slow
def test_measure_on_torch_compile() -> None:
    torch.manual_seed(0)
    model = sq.models.create("lenet300").eval()
    x = torch.randn(1, 1, 28, 28)
    m = sq.measure(
        model, x, baseline=model, batch_sizes=(4,), backend="compile",
        per_layer_latency=False, min_run_time=0.01,
    )  # fmt: skip
    assert "torch.compile" in m.backend and m.prepare_seconds[0] > 0
    assert m.comparison.speedup[0]["speedup"] > 0


def test_export_and_measure_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "l5.onnx"
    assert main(["export", "lenet5", "--out", str(out), "--json", "-"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["max_abs_diff"] < 1e-4 and out.exists()
    argv = ["measure", "lenet5", "--backend", "onnxruntime", "--batch-sizes", "1"]
    assert main([*argv, "--min-run-time", "0.01", "--json", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["backend"].startswith("ONNX Runtime")
    assert main(["export", "lenet5", "--out", str(tmp_path / "no" / "m.onnx")]) != 0
    assert "no such folder" in capsys.readouterr().err
