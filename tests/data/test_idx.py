"""IDX reading: the real files, round trips, and damaged files refused with clear errors."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import squeezer as sq
from squeezer.data.idx import parse_idx, read_idx, write_idx
from squeezer.data.mnist import FASHION_MNIST, MNIST, verify_idx_files
from squeezer.errors import DatasetFormatError

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_real_mnist_shapes_counts_and_checksums(real_data: Path) -> None:
    train, test = sq.data.load("mnist", real_data / "mnist", download=False)
    assert train.images.shape == (60000, 1, 28, 28)
    assert test.images.shape == (10000, 1, 28, 28)
    assert train.class_counts() == MNIST_TRAIN_COUNTS
    assert test.class_counts() == MNIST_TEST_COUNTS
    assert verify_idx_files(MNIST, real_data / "mnist") == dict.fromkeys(MNIST.md5, True)
    # pixel statistics match the normalization constants used for training
    assert float(train.images.float().mean() / 255) == pytest.approx(MNIST.mean, abs=1e-3)
    assert float((train.images.float() / 255).std()) == pytest.approx(MNIST.std, abs=1e-3)


def test_real_fashion_mnist_shapes_counts_and_checksums(real_data: Path) -> None:
    train, test = sq.data.load("fashion_mnist", real_data, download=False)
    assert train.images.shape == (60000, 1, 28, 28)
    assert test.images.shape == (10000, 1, 28, 28)
    assert train.class_counts() == [6000] * 10
    assert test.class_counts() == [1000] * 10
    assert train.classes[9] == "Ankle boot"
    assert verify_idx_files(FASHION_MNIST, real_data) == dict.fromkeys(FASHION_MNIST.md5, True)


def test_env_var_finds_real_data(real_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SQUEEZER_DATA", str(real_data))
    _, test = sq.data.load("mnist", download=False)
    assert len(test) == 10000


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    arrays(
        st.sampled_from([np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]),
        st.lists(st.integers(0, 5), min_size=1, max_size=4).map(tuple),
    ),
    st.booleans(),
)
def test_write_read_round_trip(tmp_path: Path, array: np.ndarray, gz: bool) -> None:
    path = tmp_path / ("a.idx.gz" if gz else "a.idx")
    write_idx(path, array)
    back = read_idx(path)
    assert back.dtype == array.dtype.newbyteorder("=")
    np.testing.assert_array_equal(back, array)


def test_compression_detected_from_content_not_name(tmp_path: Path) -> None:
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    write_idx(tmp_path / "plain-name", array, compress=True)
    np.testing.assert_array_equal(read_idx(tmp_path / "plain-name"), array)


def _header(type_code: int, shape: tuple[int, ...]) -> bytes:
    return bytes([0, 0, type_code, len(shape)]) + b"".join(d.to_bytes(4, "big") for d in shape)


def test_wrong_magic_number_names_the_file(fake_mnist: Path) -> None:
    # swap images and labels: a label file where images are expected
    images = fake_mnist / "train-images-idx3-ubyte.gz"
    labels = fake_mnist / "train-labels-idx1-ubyte.gz"
    images.write_bytes(labels.read_bytes())
    with pytest.raises(
        DatasetFormatError,
        match=r"train-images-idx3-ubyte\.gz.*magic number "
        r"0x00000801, expected 0x00000803",
    ):
        sq.data.load("mnist", fake_mnist, download=False)


def test_not_idx_at_all(tmp_path: Path) -> None:
    path = tmp_path / "junk"
    path.write_bytes(b"<html>not found</html>")
    with pytest.raises(DatasetFormatError, match="junk: wrong magic number"):
        read_idx(path)


def test_truncated_data_names_the_file(fake_mnist: Path) -> None:
    path = fake_mnist / "t10k-images-idx3-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:-100]))
    with pytest.raises(DatasetFormatError, match=r"t10k-images-idx3-ubyte\.gz: truncated"):
        sq.data.load("mnist", fake_mnist, download=False)


def test_truncated_gzip_names_the_file(fake_mnist: Path) -> None:
    path = fake_mnist / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DatasetFormatError, match=r"train-labels-idx1-ubyte\.gz: damaged gzip"):
        sq.data.load("mnist", fake_mnist, download=False)


def test_trailing_bytes_refused(tmp_path: Path) -> None:
    path = tmp_path / "x"
    path.write_bytes(_header(0x08, (2, 2)) + bytes(5))
    with pytest.raises(DatasetFormatError, match="1 unexpected bytes"):
        read_idx(path)


def test_image_label_count_mismatch(fake_mnist: Path) -> None:
    write_idx(fake_mnist / "train-labels-idx1-ubyte.gz", np.zeros(59, dtype=np.uint8))
    with pytest.raises(DatasetFormatError, match="holds 60 images but .* holds 59 labels"):
        sq.data.load("mnist", fake_mnist, download=False)


def test_label_out_of_range(fake_mnist: Path) -> None:
    write_idx(fake_mnist / "t10k-labels-idx1-ubyte.gz", np.full(20, 12, dtype=np.uint8))
    with pytest.raises(DatasetFormatError, match="label 12 out of range"):
        sq.data.load("mnist", fake_mnist, download=False)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_fuzzed_idx_bytes_never_crash_otherwise(data: st.DataObject) -> None:
    good = _header(0x08, (3, 4, 5)) + bytes(range(60))
    raw = bytearray(good)
    for _ in range(data.draw(st.integers(0, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    try:
        parse_idx(bytes(raw[:cut]), source="fuzz", expect_ndim=3, expect_type=0x08)
    except DatasetFormatError as exc:
        assert str(exc).startswith("fuzz:")
