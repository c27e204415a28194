"""CIFAR-10/100 and SVHN readers on small files written here in the official formats."""

from __future__ import annotations

import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io

import squeezer as sq
from helpers import CIFAR10_NAMES, write_cifar10
from squeezer.errors import DatasetFormatError, DatasetNotFoundError


def test_cifar10_folder(tmp_path: Path) -> None:
    batches = write_cifar10(tmp_path / "cifar10")
    train, test = sq.data.load("cifar10", tmp_path, download=False)
    assert train.images.shape == (35, 3, 32, 32) and test.images.shape == (7, 3, 32, 32)
    first = np.asarray(batches["data_batch_1"][b"data"])[0].reshape(3, 32, 32)
    np.testing.assert_array_equal(train.images[0].numpy(), first)  # channel planes kept
    assert train.labels[:7].tolist() == batches["data_batch_1"][b"labels"]
    assert test.labels.tolist() == batches["test_batch"][b"labels"]
    assert list(train.classes) == CIFAR10_NAMES
    assert train.augment == sq.data.Augment(pad=4, hflip=True) and test.augment is None


def test_cifar10_read_from_archive_without_extracting(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_cifar10(src)
    root = tmp_path / "cifar10"
    root.mkdir()
    with tarfile.open(root / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(src / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    train, test = sq.data.load("cifar10", root, download=False)
    assert (len(train), len(test)) == (35, 7)
    assert not (root / "cifar-10-batches-py").exists()


def test_cifar100_fine_labels(tmp_path: Path) -> None:
    folder = tmp_path / "cifar100" / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("test", 5)):
        batch = {
            b"fine_labels": [int(v) for v in rng.integers(0, 100, n)],
            b"coarse_labels": [int(v) for v in rng.integers(0, 20, n)],
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        }
        (folder / split).write_bytes(pickle.dumps(batch, protocol=2))
    names = [f"class{i}".encode() for i in range(100)]
    (folder / "meta").write_bytes(pickle.dumps({b"fine_label_names": names}, protocol=2))
    train, test = sq.data.load("cifar-100", tmp_path, download=False)
    assert (len(train), len(test), train.num_classes) == (12, 5, 100)
    assert train.classes[42] == "class42"


class _Evil:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("echo pwned",))


def test_forged_cifar_batch_cannot_run_code(tmp_path: Path) -> None:
    write_cifar10(tmp_path / "cifar10")
    target = tmp_path / "cifar10" / "cifar-10-batches-py" / "data_batch_3"
    target.write_bytes(pickle.dumps({b"data": _Evil(), b"labels": []}, protocol=2))
    with pytest.raises(DatasetFormatError, match=r"data_batch_3.*refusing to load global"):
        sq.data.load("cifar10", tmp_path, download=False)


def test_damaged_cifar_batch(tmp_path: Path) -> None:
    write_cifar10(tmp_path / "cifar10")
    target = tmp_path / "cifar10" / "cifar-10-batches-py" / "test_batch"
    target.write_bytes(target.read_bytes()[:100])
    with pytest.raises(DatasetFormatError, match="test_batch: not a CIFAR batch file"):
        sq.data.load("cifar10", tmp_path, download=False)


def test_cifar_wrong_shape(tmp_path: Path) -> None:
    write_cifar10(tmp_path / "cifar10")
    target = tmp_path / "cifar10" / "cifar-10-batches-py" / "data_batch_1"
    batch = {b"data": np.zeros((3, 100), np.uint8), b"labels": [0, 1, 2]}
    target.write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DatasetFormatError, match=r"'data' must be uint8 \(N, 3072\)"):
        sq.data.load("cifar10", tmp_path, download=False)


def test_cifar_missing(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="CIFAR-10 not found.*data_batch_1"):
        sq.data.load("cifar10", tmp_path, download=False)


def write_svhn(folder: Path, n_train: int = 9, n_test: int = 4) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        y = (np.arange(n) % 10 + 1).reshape(n, 1).astype(np.uint8)  # 1..10, 10 means 0
        scipy.io.savemat(folder / f"{split}_32x32.mat", {"X": x, "y": y})
        out[split] = x
    return out


def test_svhn_mat(tmp_path: Path) -> None:
    arrays = write_svhn(tmp_path / "svhn")
    train, test = sq.data.load("svhn", tmp_path, download=False)
    assert train.images.shape == (9, 3, 32, 32) and test.images.shape == (4, 3, 32, 32)
    assert train.labels.tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert sq.data.load("svhn", tmp_path, download=False)[0].labels.max() <= 9
    np.testing.assert_array_equal(train.images[2, 1].numpy(), arrays["train"][:, :, 1, 2])
    assert train.augment == sq.data.Augment(pad=4)  # digits: no flips


def test_svhn_label_ten_is_zero(tmp_path: Path) -> None:
    write_svhn(tmp_path / "svhn", n_train=10)
    train, _ = sq.data.load("svhn", tmp_path, download=False)
    assert train.labels[9] == 0


def test_svhn_damaged(tmp_path: Path) -> None:
    write_svhn(tmp_path / "svhn")
    (tmp_path / "svhn" / "test_32x32.mat").write_bytes(b"MATLAB 5.0 MAT-file" + bytes(50))
    with pytest.raises(DatasetFormatError, match="test_32x32.mat"):
        sq.data.load("svhn", tmp_path, download=False)


def test_svhn_wrong_variables(tmp_path: Path) -> None:
    write_svhn(tmp_path / "svhn")
    buf = io.BytesIO()
    scipy.io.savemat(buf, {"images": np.zeros((2, 2))})
    (tmp_path / "svhn" / "train_32x32.mat").write_bytes(buf.getvalue())
    with pytest.raises(DatasetFormatError, match="expected variables 'X' and 'y'"):
        sq.data.load("svhn", tmp_path, download=False)
