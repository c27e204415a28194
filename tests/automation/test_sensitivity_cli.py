"""``squeezer sensitivity`` end to end on a small fake dataset, and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from test_cli import assert_one_line_error, run


def test_scan_prints_a_table_and_writes_json_and_plot(
    lenet300: Path, fake_mnist: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    js, png = tmp_path / "s.json", tmp_path / "s.png"
    code, out, err = run(capsys, "sensitivity", str(lenet300), "--method", "sparsity",
                         "--values", "0,0.9", "--data-dir", str(fake_mnist), "--val-examples",
                         "40", "--json", str(js), "--plot", str(png))  # fmt: skip
    assert code == 0, err
    assert "fc1" in out and "fc3" in out and "top-1 drop" in out
    result = json.loads(js.read_text())
    assert result["setting"] == "sparsity" and result["values"] == [0.0, 0.9]
    assert result["split"] == "train" and result["examples"] == 40
    assert set(result["layers"]) == {"fc1", "fc2", "fc3"}
    assert result["layers"]["fc1"][0]["drop"] == pytest.approx(0.0, abs=1e-9)
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_bits_and_rank_run(
    lenet300: Path, fake_mnist: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for method, values in (("bits", "8,2"), ("rank", "0.5"), ("channels", "0.5")):
        code, out, err = run(capsys, "sensitivity", str(lenet300), "--method", method,
                             "--values", values, "--data-dir", str(fake_mnist),
                             "--val-examples", "20", "--layers", "fc1,fc2")  # fmt: skip
        assert code == 0, (method, err)
        assert "fc1" in out and "fc3" not in out.split("\n", 2)[2]


@pytest.mark.parametrize(
    ("extra", "fragments"),
    [
        (["--values", "0.5,x"], ["--values", "numbers"]),
        (["--values", "1.5"], ["fractions in [0, 1)"]),
        (["--method", "bits", "--values", "4.5"], ["whole numbers"]),
        (["--layers", "nothing*"], ["selects no layer"]),
    ],
)
def test_bad_input_is_one_line(
    lenet300: Path, fake_mnist: Path, capsys: pytest.CaptureFixture[str], extra, fragments
) -> None:
    argv = ["sensitivity", str(lenet300), "--data-dir", str(fake_mnist)]
    if "--method" not in extra:
        argv += ["--method", "sparsity"]
    code, _, err = run(capsys, *argv, *extra)
    assert_one_line_error(code, err, *fragments)


@pytest.mark.parametrize("method", ["tpe", "amc", "uniform"])
def test_search_command_meets_the_budget_and_saves(
    lenet5: Path, fake_mnist: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], method
) -> None:
    out, js = tmp_path / "s.sqz", tmp_path / "s.json"
    code, stdout, err = run(capsys, "search", str(lenet5), "--method", method, "--budget",
                            "flops:2", "--trials", "2", "--episodes", "3", "--warmup", "2",
                            "--data-dir", str(fake_mnist), "--val-examples", "20",
                            "--bn-batches", "1", "--out", str(out), "--json", str(js),
                            "--batch-sizes", "1", "--min-run-time", "0.01")  # fmt: skip
    assert code == 0, err
    result = json.loads(js.read_text())
    assert result["flops_reduction"] >= 2.0
    assert result["search"]["best"]["reduction"] == pytest.approx(result["flops_reduction"])
    assert set(result["policy"]) and out.exists()
    assert "best: trial" in stdout


def test_search_command_bad_budget(lenet5: Path, fake_mnist: Path, capsys) -> None:
    for budget, fragment in (("flops", "METRIC:X"), ("flops:0.5", "> 1"),
                             ("flops:400", "closest reachable")):  # fmt: skip
        code, _, err = run(capsys, "search", str(lenet5), "--budget", budget, "--data-dir",
                           str(fake_mnist), "--val-examples", "20", "--trials", "1")  # fmt: skip
        assert_one_line_error(code, err, fragment)


def test_search_command_bits_space(
    lenet5: Path, fake_mnist: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, js = tmp_path / "b.sqz", tmp_path / "b.json"
    code, _, err = run(capsys, "search", str(lenet5), "--space", "bits", "--method", "amc",
                            "--budget", "size:6", "--episodes", "3", "--warmup", "2",
                            "--data-dir", str(fake_mnist), "--val-examples", "20",
                            "--bn-batches", "0", "--out", str(out), "--json", str(js),
                            "--batch-sizes", "1", "--min-run-time", "0.01")  # fmt: skip
    assert code == 0, err
    result = json.loads(js.read_text())
    assert all(2 <= b <= 8 for b in result["policy"].values())
    assert out.stat().st_size <= result["search"]["original_cost"] / 6
    code, _, err = run(capsys, "search", str(lenet5), "--space", "bits", "--budget", "flops:2",
                       "--data-dir", str(fake_mnist))  # fmt: skip
    assert_one_line_error(code, err, "must be size")


def test_search_command_morphnet(
    fake_mnist: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], lenet5: Path,
    resnet20: Path,
) -> None:  # fmt: skip
    model = resnet20
    js = tmp_path / "m.json"
    code, _, err = run(capsys, "search", str(model), "--method", "morphnet", "--budget",
                       "flops:2", "--morph-epochs", "1", "--strength", "0.5", "--threshold",
                       "0.05", "--data-dir", str(fake_mnist), "--val-examples", "20",
                       "--bn-batches", "1", "--out", str(tmp_path / "m.sqz"), "--json", str(js),
                       "--batch-sizes", "1", "--min-run-time", "0.01")  # fmt: skip
    assert code == 0, err
    assert "expansion factor" in err
    result = json.loads(js.read_text())
    assert result["flops_reduction"] >= 2.0 and result["search"]["method"] == "morphnet"
    # LeNet-5 has no BatchNorm: nothing for MorphNet's penalty to act on
    code, _, err = run(capsys, "search", str(lenet5), "--method", "morphnet", "--data-dir",
                       str(fake_mnist), "--val-examples", "20")  # fmt: skip
    assert_one_line_error(code, err, "BatchNorm")
