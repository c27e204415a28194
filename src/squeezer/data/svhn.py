"""SVHN, cropped digits (Netzer et al. 2011), from the official MATLAB ``.mat`` files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io
import torch

from squeezer.data.dataset import Augment, ImageDataset
from squeezer.data.files import (
    DownloadError,
    download,
    download_dir,
    not_found_message,
    search_dirs,
)
from squeezer.errors import DatasetFormatError, DatasetNotFoundError

TITLE = "SVHN"
BASE_URL = "http://ufldl.stanford.edu/housenumbers/"
FILES = {
    "train": ("train_32x32.mat", "e26dedcc434d2e4c54c9b2d4a06d8373"),
    "test": ("test_32x32.mat", "eb5a983be6a315427106f1b164d9cef3"),
}
MEAN = (0.4377, 0.4438, 0.4728)
STD = (0.1980, 0.2010, 0.1970)


def read_svhn_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one split: images ``(N, 3, 32, 32)`` uint8 and labels 0..9 (the file's 10 is 0).

    Raises:
        DatasetFormatError: the file is not an SVHN ``.mat`` file.
    """
    try:
        mat = scipy.io.loadmat(path)
    except Exception as exc:  # scipy raises many types on damaged input
        raise DatasetFormatError(f"{path}: not a readable .mat file: {exc}") from None
    if "X" not in mat or "y" not in mat:
        raise DatasetFormatError(f"{path}: expected variables 'X' and 'y'")
    x, y = np.asarray(mat["X"]), np.asarray(mat["y"]).reshape(-1)
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.dtype != np.uint8:
        raise DatasetFormatError(
            f"{path}: 'X' must be uint8 (32, 32, 3, N), got {x.dtype} {x.shape}"
        )
    if y.shape[0] != x.shape[3]:
        raise DatasetFormatError(f"{path}: {x.shape[3]} images but {y.shape[0]} labels")
    y = y.astype(np.int64)
    if y.size and (y.min() < 1 or y.max() > 10):
        raise DatasetFormatError(f"{path}: labels must be 1..10 (10 is digit 0)")
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1)), np.where(y == 10, 0, y)


def load_svhn(
    data_dir: str | Path | None = None,
    *,
    download: bool = True,
    augment: bool = True,
    progress: bool | None = None,
) -> tuple[ImageDataset, ImageDataset]:
    """Load SVHN's train and test splits (the 'extra' split is not used)."""
    dirs = search_dirs("svhn", data_dir)
    names = [f for f, _ in FILES.values()]
    folder = next((d for d in dirs if all((d / f).is_file() for f in names)), None)
    if folder is None:
        reason = None
        if download:
            target = download_dir("svhn", data_dir)
            try:
                for file, md5 in FILES.values():
                    if not (target / file).is_file():
                        _fetch(file, md5, target, progress)
                folder = target
            except DownloadError as exc:
                reason = str(exc)
        if folder is None:
            raise DatasetNotFoundError(not_found_message(TITLE, dirs, names, reason))
    classes = tuple(str(i) for i in range(10))
    splits = {}
    for split, (file, _) in FILES.items():
        x, y = read_svhn_mat(folder / file)
        aug = Augment(pad=4) if augment and split == "train" else None
        splits[split] = ImageDataset(
            torch.from_numpy(x),
            torch.from_numpy(y),
            name="svhn",
            mean=MEAN,
            std=STD,
            classes=classes,
            augment=aug,
        )
    return splits["train"], splits["test"]


def _fetch(file: str, md5: str, target: Path, progress: bool | None) -> None:
    download([BASE_URL + file], target / file, md5=md5, progress=progress)
