"""``squeezer sensitivity`` end to end on a small fake dataset, and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from test_cli import assert_one_line_error, run


@pytest.fixture
def lenet300(tmp_path: Path, fake_mnist: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    out = tmp_path / "m.pt"
    code, _, _ = run(capsys, "train", "lenet300", "--dataset", "mnist", "--data-dir",
                     str(fake_mnist), "--epochs", "1", "--out", str(out), "--quiet")  # fmt: skip
    assert code == 0
    return out


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
