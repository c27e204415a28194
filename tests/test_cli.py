"""The command line: each command end to end on small data, and clean one-line errors."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import squeezer as sq
from squeezer.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse exits on usage errors and --help
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code != 0
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "error:" in lines[0] and "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0]


def go_offline(monkeypatch: pytest.MonkeyPatch, spec: str) -> None:
    """Make an IDX dataset's mirrors unreachable, as on a machine with no network."""
    import squeezer.data as sqdata

    offline = dataclasses.replace(getattr(sqdata, spec), mirrors=("file:///nonexistent/",))
    monkeypatch.setattr(sqdata, spec, offline)


@pytest.fixture
def trained(tmp_path: Path, fake_mnist: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    out = tmp_path / "m.pt"
    code, _, _ = run(
        capsys,
        "train",
        "lenet300",
        "--dataset",
        "mnist",
        "--data-dir",
        str(fake_mnist),
        "--epochs",
        "1",
        "--out",
        str(out),
        "--quiet",
    )
    assert code == 0
    return out


def test_train_writes_checkpoint_and_json(
    tmp_path: Path, fake_mnist: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, js = tmp_path / "m.pt", tmp_path / "train.json"
    code, _, err = run(
        capsys,
        "train",
        "lenet5",
        "--dataset",
        "mnist",
        "--data-dir",
        str(fake_mnist),
        "--epochs",
        "2",
        "--out",
        str(out),
        "--json",
        str(js),
    )
    assert code == 0, err
    result = json.loads(js.read_text())
    assert 0 <= result["top1"] <= 1 and result["loss"] > 0
    assert len(result["history"]) == 2 and "epoch 2/2" in err
    model = sq.load_checkpoint(out)
    assert sum(p.numel() for p in model.parameters()) == 431_080
    assert sq.train.read_checkpoint(out)["meta"]["dataset"] == "mnist"


def test_train_refuses_to_overwrite_then_resumes(
    trained: Path, fake_mnist: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = [
        "train",
        "lenet300",
        "--dataset",
        "mnist",
        "--data-dir",
        str(fake_mnist),
        "--out",
        str(trained),
        "--quiet",
    ]
    code, _, err = run(capsys, *base, "--epochs", "2")
    assert_one_line_error(code, err, "exists", "--resume")
    js = trained.with_suffix(".json")
    code, _, err = run(capsys, *base, "--epochs", "2", "--resume", "--json", str(js))
    assert code == 0, err
    result = json.loads(js.read_text())
    assert result["resumed_from_epoch"] == 1 and len(result["history"]) == 2


def test_evaluate_checkpoint(
    trained: Path, fake_mnist: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(
        capsys,
        "evaluate",
        str(trained),
        "--dataset",
        "mnist",
        "--data-dir",
        str(fake_mnist),
        "--json",
        "-",
    )
    assert code == 0, err
    result = json.loads(out[out.index("{") :])
    assert set(result) >= {"top1", "loss", "top5", "n"} and result["n"] == 20


def test_evaluate_real_mnist_subset(
    trained: Path, real_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(
        capsys,
        "evaluate",
        str(trained),
        "--dataset",
        "mnist",
        "--data-dir",
        str(real_data),
        "--limit",
        "500",
    )
    assert code == 0 and "(500 images)" in out


def test_measure_with_baseline_json(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    js = tmp_path / "measure.json"
    code, out, err = run(
        capsys,
        "measure",
        str(trained),
        "--baseline",
        str(trained),
        "--batch-sizes",
        "1,8",
        "--threads",
        "1",
        "--min-run-time",
        "0.01",
        "--json",
        str(js),
    )
    assert code == 0, err
    result = json.loads(js.read_text())
    for key in (
        "params",
        "nonzero_params",
        "flops",
        "size_bytes",
        "latency_ms",
        "compression_rate",
        "flops_reduction",
        "speedup",
        "file_bytes",
    ):
        assert key in result
    assert result["params"] == 266_610 and result["compression_rate"] == pytest.approx(1.0)
    assert [s["batch_size"] for s in result["speedup"]] == [1, 8]
    assert "speedup delta" in out


def test_measure_zoo_name_without_latency(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "measure", "lenet5", "--no-latency")
    assert code == 0 and "431,080" in out and "random weights" in err


def test_models_and_datasets_lists(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "models", "lenet*")
    assert code == 0 and out.split() == ["lenet300", "lenet5"]
    code, out, _ = run(capsys, "datasets")
    assert code == 0 and "fashion-mnist" in out and "svhn" in out


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--help"],
        ["evaluate", "--help"],
        ["measure", "--help"],
        ["demo", "--help"],
        ["--help"],
    ],
)
def test_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, *argv)
    assert code == 0 and "usage: squeezer" in out


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        (["evaluate", "missing.pt", "--dataset", "mnist"], ["missing.pt", "no such file"]),
        (
            ["measure", "nothing-here"],
            ["neither a file, a module:callable factory nor a model name"],
        ),
        (["train", "lenet6", "--dataset", "mnist"], ["unknown model 'lenet6'", "lenet5"]),
        (["train", "lenet5", "--dataset", "imagenet42"], ["unknown dataset 'imagenet42'"]),
        (["train", "lenet5", "--dataset", "mnist", "--epochs", "0"], ["positive integer"]),
        (["train", "lenet5", "--dataset", "mnist", "--optimizer", "rmsprop"], ["invalid choice"]),
        (["train", "lenet5"], ["--dataset"]),
        (["measure", "lenet5", "--batch-sizes", "1,x"], ["--batch-sizes", "integers"]),
        (["measure", "lenet5", "--input-shape", "3,32,32", "--no-latency"], ["does not run"]),
        (["frobnicate"], ["invalid choice"]),
        (["train", "lenet5", "--dataset", "mnist", "--device", "tpu"], ["unknown device 'tpu'"]),
        (["run", "lenet5-sparse-vd", "lenet5", "--device", "cuda:x"], ["unknown device"]),
    ],
)
def test_bad_input_gives_one_line_error(
    argv: list[str], fragments: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, *argv)
    assert_one_line_error(code, err, *fragments)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_device_this_machine_lacks(capsys: pytest.CaptureFixture[str]) -> None:
    for command in (["train", "lenet5", "--dataset", "mnist"], ["quantize", "lenet5"]):
        code, _, err = run(capsys, *command, "--device", "cuda")
        assert_one_line_error(code, err, "--device", "no CUDA GPU")


def test_unreadable_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    code, _, err = run(capsys, "evaluate", str(bad), "--dataset", "mnist")
    assert_one_line_error(code, err, "bad.pt", "not a readable PyTorch checkpoint")
    code, _, err = run(capsys, "measure", str(bad))
    assert_one_line_error(code, err, "bad.pt")


def test_dataset_missing_offline(
    tmp_path: Path,
    trained: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    go_offline(monkeypatch, "FASHION_MNIST")
    code, _, err = run(
        capsys,
        "evaluate",
        str(trained),
        "--dataset",
        "fashion-mnist",
        "--data-dir",
        str(tmp_path / "empty"),
    )
    assert_one_line_error(code, err, "Fashion-MNIST not found", "SQUEEZER_DATA")


def test_model_dataset_mismatch(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from helpers import write_cifar10

    write_cifar10(tmp_path / "cifar10")
    code, _, err = run(
        capsys, "evaluate", str(trained), "--dataset", "cifar10", "--data-dir", str(tmp_path)
    )
    assert_one_line_error(code, err, "(1, 28, 28)", "(3, 32, 32)")


def test_demo_falls_back_to_digits_offline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    go_offline(monkeypatch, "MNIST")
    js = tmp_path / "demo.json"
    code, out, err = run(
        capsys, "demo", "--data-dir", str(tmp_path / "none"), "--epochs", "1", "--json", str(js)
    )
    assert code == 0, err
    assert "falling back to scikit-learn's bundled 8x8 digits" in err
    result = json.loads(js.read_text())
    assert result["dataset"] == "digits" and result["top1_before"] > 0.8
    assert result["size_bytes_after"] * 20 < result["size_bytes_before"]  # pruned, shared, coded
    assert result["top1_after"] > result["top1_before"] - 0.1
    assert "compressed, reloaded from .sqz" in out and "measured speedup" in out


def test_console_script_runs_without_traceback(tmp_path: Path) -> None:
    env = {**os.environ, "HOME": str(tmp_path)}
    exe = Path(sys.executable).with_name("squeezer")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "squeezer.cli"]
    ok = subprocess.run([*cmd, "--version"], capture_output=True, text=True, env=env, check=False)
    assert ok.returncode == 0 and ok.stdout.startswith("squeezer ")
    bad = subprocess.run(
        [*cmd, "evaluate", "nope.pt", "--dataset", "mnist"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert bad.stderr.strip() == "squeezer evaluate: error: nope.pt: no such file"


def test_compress_inspect_evaluate_measure_sqz(
    tmp_path: Path, real_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, js = tmp_path / "m.sqz", tmp_path / "c.json"
    code, text, err = run(
        capsys,
        "compress",
        "lenet300",
        "--dataset",
        "mnist",
        "--data-dir",
        str(real_data),
        "--limit",
        "600",
        "--quick",
        "--quiet",
        "--out",
        str(out),
        "--backend",
        "eager",
        "--sparse",
        "--batch-sizes",
        "1",
        "--json",
        str(js),
    )
    assert code == 0, err
    result = json.loads(js.read_text())
    assert "sparse CSR kernels for: fc1" in err and "speedup delta" in text
    assert result["measurement"]["compression_rate"] > 5
    for key in ("compression_rate", "size_bytes", "top1_before", "top1_after", "stages"):
        assert key in result
    assert result["size_bytes"] == out.stat().st_size
    assert "+ Huffman coding" in text
    code, text, err = run(capsys, "inspect", str(out), "--json", str(tmp_path / "i.json"))
    assert code == 0, err
    assert "fc1.weight" in text and "huffman/entropy" in text
    inspected = json.loads((tmp_path / "i.json").read_text())
    assert inspected["file_bytes"] == out.stat().st_size
    code, text, err = run(
        capsys, "evaluate", str(out), "--data-dir", str(real_data), "--limit", "600"
    )
    assert code == 0, err
    assert f"top1 {result['top1_after']:.4f}" in text  # the dataset came from the header
    code, text, err = run(
        capsys, "measure", str(out), "--sparse", "--no-latency", "--json", str(tmp_path / "m.json")
    )
    assert code == 0 and "SparseLinear" in text and "fc1" in err


def test_compress_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "r.yaml"
    bad.write_text("prune_epoch: 1\n")
    code, _, err = run(capsys, "compress", "lenet300", "--config", str(bad))
    assert_one_line_error(code, err, "unknown key", "prune_epoch")
    code, _, err = run(capsys, "compress", "lenet300", "--recipe", "magic")
    assert_one_line_error(code, err, "neither a recipe file nor a shipped recipe")
    code, _, err = run(capsys, "inspect", str(bad))
    assert_one_line_error(code, err, "a .sqz file")


def test_prune_command(
    tmp_path: Path, trained: Path, fake_mnist: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, js = tmp_path / "p.sqz", tmp_path / "p.json"
    code, text, err = run(
        capsys,
        "prune",
        str(trained),
        "--ratio",
        "0.5",
        "--finetune-epochs",
        "1",
        "--data-dir",
        str(fake_mnist),
        "--min-run-time",
        "0.01",
        "--out",
        str(out),
        "--json",
        str(js),
        "--quiet",
    )
    assert code == 0, err
    result = json.loads(js.read_text())
    assert result["params"] < result["baseline"]["params"]
    assert result["flops_reduction"] > 1.5 and "top1_after" in result
    assert "top1_recalibrated" in result
    assert "speedup delta" in text
    pruned = sq.load(out)
    assert pruned.fc1.out_features == 150 and pruned.fc2.out_features == 50
    code, _, err = run(capsys, "prune", "resnet20", "--ratio", "1.5")
    assert_one_line_error(code, err, "--ratio must be in [0, 1)")


def test_prune_single_weights_by_second_order_saliency(
    tmp_path: Path, trained: Path, fake_mnist: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    js, out = tmp_path / "p.json", tmp_path / "p.sqz"
    argv = ["prune", str(trained), "--sparsity", "0.8", "--saliency", "obs", "--samples", "64",
            "--ignore", "fc1",
            "--data-dir", str(fake_mnist), "--min-run-time", "0.01", "--batch-sizes", "1",
            "--out", str(out), "--json", str(js), "--quiet"]  # fmt: skip
    code, text, err = run(capsys, *argv)
    assert code == 0, err
    result = json.loads(js.read_text())
    assert result["saliency"] == "obs" and result["weights"]["sparsity"] == pytest.approx(0.8)
    assert "optimal brain surgeon" in text
    pruned = sq.load(out)
    assert float((pruned.fc2.weight == 0).float().mean()) == pytest.approx(0.8, abs=1e-3)
    assert float((pruned.fc1.weight == 0).float().mean()) < 0.01  # --ignore fc1
    code, _, err = run(capsys, "prune", str(trained), "--sparsity", "1.2")
    assert_one_line_error(code, err, "--sparsity must be in [0, 1)")


@pytest.mark.parametrize("criterion", ["taylor", "apoz", "thinet", "lasso"])
def test_prune_with_data_criteria(
    criterion: str,
    tmp_path: Path,
    trained: Path,
    fake_mnist: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    js = tmp_path / "p.json"
    code, _, err = run(
        capsys,
        "prune",
        str(trained),
        "--ratio",
        "0.3",
        "--criterion",
        criterion,
        "--data-dir",
        str(fake_mnist),
        "--min-run-time",
        "0.01",
        "--batch-sizes",
        "1",
        "--out",
        str(tmp_path / "p.pt"),
        "--json",
        str(js),
        "--quiet",
    )
    assert code == 0, err
    result = json.loads(js.read_text())
    assert result["criterion"] == criterion and result["params"] < result["baseline"]["params"]
    assert sq.load_checkpoint(tmp_path / "p.pt").fc1.out_features == 210


def test_factorize_command(
    tmp_path: Path, trained: Path, fake_mnist: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, js = tmp_path / "f.sqz", tmp_path / "f.json"
    code, text, err = run(
        capsys,
        "factorize",
        str(trained),
        "--method",
        "svd",
        "--rank",
        "compression:3",
        "--reconstruct",
        "2",
        "--finetune-epochs",
        "1",
        "--data-dir",
        str(fake_mnist),
        "--min-run-time",
        "0.01",
        "--batch-sizes",
        "1",
        "--out",
        str(out),
        "--json",
        str(js),
        "--quiet",
    )
    assert code == 0, err
    result = json.loads(js.read_text())
    (svd,) = result["factorization"]
    assert svd["totals"]["layers_converted"] >= 2
    for row in svd["layers"]:
        if row["converted"]:
            assert row["params_before"] / row["params_after"] > 2.9  # 3x on weights; biases stay
            assert row["output_error_after"] <= row["output_error_before"]
    assert result["params"] < result["baseline"]["params"] and "top1_after" in result
    assert "factorization: svd" in text and "fc1" in text
    loaded = sq.load(out)
    assert isinstance(loaded.fc1, torch.nn.Sequential)


def test_factorize_zoo_model_and_bad_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "f.pt"
    code, text, err = run(
        capsys, "factorize", "lenet5", "--method", "tucker,tt", "--rank", "vbmf",
        "--layout", "deploy", "--min-run-time", "0.01", "--batch-sizes", "1", "--out", str(out),
    )  # fmt: skip
    assert code == 0, err
    assert "factorization: tucker" in text and "factorization: tt" in text
    assert "BatchNorm folded, channels-last" in text
    assert sq.load_checkpoint(out)(torch.zeros(1, 1, 28, 28)).shape == (1, 10)
    code, _, err = run(capsys, "factorize", "lenet5", "--method", "qr")
    assert_one_line_error(code, err, "--method: unknown qr")
    code, _, err = run(capsys, "factorize", "lenet5", "--rank", "lots")
    assert_one_line_error(code, err, "invalid rank")


def test_factorize_with_structured_matrices(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "s.sqz"
    code, text, err = run(
        capsys, "factorize", "lenet300", "--method", "fastfood", "--layers", "fc1,fc2",
        "--min-run-time", "0.01", "--batch-sizes", "1", "--out", str(out),
    )  # fmt: skip
    assert code == 0, err
    assert "factorization: fastfood" in text
    assert isinstance(sq.load(out).fc1, sq.layers.FastfoodLinear)
    code, _, err = run(capsys, "factorize", "lenet300", "--method", "ldr", "--rank", "0.5")
    assert_one_line_error(code, err, "displacement rank")
