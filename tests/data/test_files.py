"""Finding dataset files in order, downloading with checksums, and the offline error."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import pytest

import squeezer as sq
from helpers import make_idx_folder
from squeezer.data import files
from squeezer.data.mnist import IDX_FILES, MNIST, load_idx_dataset
from squeezer.errors import DatasetNotFoundError


def test_search_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_home: Path) -> None:
    monkeypatch.setenv("SQUEEZER_DATA", str(tmp_path / "env"))
    dirs = files.search_dirs("mnist", tmp_path / "explicit")
    assert dirs == [
        tmp_path / "explicit",
        tmp_path / "explicit" / "mnist",
        tmp_path / "env" / "mnist",
        isolated_home / ".cache" / "squeezer" / "mnist",
        files.SYSTEM_DIR / "mnist",
    ]


@pytest.mark.parametrize("where", ["explicit", "env", "cache", "system"])
def test_each_search_location_is_used(
    where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_home: Path
) -> None:
    folder = {
        "explicit": tmp_path / "explicit",
        "env": tmp_path / "env" / "mnist",
        "cache": isolated_home / ".cache" / "squeezer" / "mnist",
        "system": tmp_path / "system" / "mnist",
    }[where]
    arrays = make_idx_folder(folder, n_train=30, seed=hash(where) % 1000)
    monkeypatch.setenv("SQUEEZER_DATA", str(tmp_path / "env"))
    monkeypatch.setattr(files, "SYSTEM_DIR", tmp_path / "system")
    data_dir = tmp_path / "explicit" if where == "explicit" else None
    train, _ = sq.data.load("mnist", data_dir, download=False)
    np.testing.assert_array_equal(train.images[:, 0].numpy(), arrays["train-images-idx3-ubyte"])


def test_explicit_dir_wins_over_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_idx_folder(tmp_path / "a", n_train=10)
    make_idx_folder(tmp_path / "env" / "mnist", n_train=50)
    monkeypatch.setenv("SQUEEZER_DATA", str(tmp_path / "env"))
    assert len(sq.data.load("mnist", tmp_path / "a", download=False)[0]) == 10
    assert len(sq.data.load("mnist", download=False)[0]) == 50


def test_uncompressed_files_are_read(tmp_path: Path) -> None:
    make_idx_folder(tmp_path / "raw", gz=False)
    train, test = sq.data.load("mnist", tmp_path / "raw", download=False)
    assert (len(train), len(test)) == (60, 20)


def _mirror(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    mirror = tmp_path / "mirror"
    make_idx_folder(mirror, n_train=40, n_test=10)
    md5 = {s: files.md5_of(mirror / f"{s}.gz", uncompressed=True) for s in IDX_FILES}
    return mirror, md5


def test_download_from_mirror_verifies_and_loads(tmp_path: Path) -> None:
    mirror, md5 = _mirror(tmp_path)
    spec = dataclasses.replace(
        MNIST, mirrors=("file:///nonexistent/", mirror.as_uri() + "/"), md5=md5
    )
    train, test = load_idx_dataset(spec, tmp_path / "dl", progress=False)
    assert (len(train), len(test)) == (40, 10)
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == sorted(
        f"{s}.gz" for s in IDX_FILES
    )


def test_download_with_wrong_checksum_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    mirror, md5 = _mirror(tmp_path)
    md5["t10k-labels-idx1-ubyte"] = hashlib.md5(b"other").hexdigest()
    spec = dataclasses.replace(MNIST, mirrors=(mirror.as_uri() + "/",), md5=md5)
    with pytest.raises(DatasetNotFoundError, match="checksum mismatch"):
        load_idx_dataset(spec, tmp_path / "dl", progress=False)
    assert not (tmp_path / "dl" / "t10k-labels-idx1-ubyte.gz").exists()
    assert not list((tmp_path / "dl").glob("*.part"))


def test_offline_error_names_everything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = dataclasses.replace(MNIST, mirrors=("file:///nonexistent-mirror/",))
    monkeypatch.setenv("SQUEEZER_DATA", str(tmp_path / "env"))
    with pytest.raises(DatasetNotFoundError) as info:
        load_idx_dataset(spec, tmp_path / "explicit", progress=False)
    message = str(info.value)
    assert message.startswith("MNIST not found")
    for stem in IDX_FILES:
        assert stem in message
    for folder in files.search_dirs("mnist", tmp_path / "explicit"):
        assert str(folder) in message
    assert "SQUEEZER_DATA" in message
    assert "Download failed" in message


def test_no_download_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="Download was not attempted"):
        sq.data.load("fashion-mnist", tmp_path, download=False)


def test_unknown_dataset_suggests() -> None:
    with pytest.raises(sq.errors.UnknownNameError, match="did you mean mnist"):
        sq.data.load("mnsit")
