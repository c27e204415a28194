"""What the automation tests share: small trained models on the fake MNIST folder, written
by the command line, and the searches' trained CNN and its space."""

from __future__ import annotations

from pathlib import Path

import pytest

import searchkit
from test_cli import run


def _trained(name: str, tmp_path: Path, fake_mnist: Path, capsys) -> Path:
    out = tmp_path / f"{name}.pt"
    code, _, err = run(capsys, "train", name, "--dataset", "mnist", "--data-dir",
                       str(fake_mnist), "--epochs", "1", "--out", str(out), "--quiet")  # fmt: skip
    assert code == 0, err
    return out


@pytest.fixture
def lenet300(tmp_path: Path, fake_mnist: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    return _trained("lenet300", tmp_path, fake_mnist, capsys)


@pytest.fixture
def lenet5(tmp_path: Path, fake_mnist: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    return _trained("lenet5", tmp_path, fake_mnist, capsys)


@pytest.fixture
def resnet20(tmp_path: Path, fake_mnist: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    return _trained("resnet20", tmp_path, fake_mnist, capsys)


@pytest.fixture(scope="module")
def setup():
    """The searches' small trained CNN, its ChannelSpace and Evaluator."""
    model, train, val = searchkit.trained()
    space, evaluator = searchkit.space_and_evaluator(model, train, val)
    return model, space, evaluator
