"""MNIST (LeCun et al. 1998) and Fashion-MNIST (Xiao et al. 2017) from the standard IDX files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from squeezer.data.dataset import Augment, ImageDataset
from squeezer.data.files import (
    DownloadError,
    download,
    download_dir,
    md5_of,
    not_found_message,
    search_dirs,
)
from squeezer.data.idx import read_idx
from squeezer.errors import DatasetFormatError, DatasetNotFoundError

IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


@dataclass(frozen=True)
class IdxDatasetSpec:
    """What distinguishes MNIST from Fashion-MNIST: names, mirrors, checksums, statistics."""

    name: str
    title: str
    mirrors: tuple[str, ...]
    md5: dict[str, str]  # MD5 of each *uncompressed* file: robust to re-gzipped copies
    classes: tuple[str, ...]
    mean: float
    std: float
    augment: Augment


MNIST = IdxDatasetSpec(
    name="mnist",
    title="MNIST",
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    md5={
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    },
    classes=tuple(str(i) for i in range(10)),
    mean=0.1307,
    std=0.3081,
    augment=Augment(pad=2),  # digits: shifts yes, flips no
)

FASHION_MNIST = IdxDatasetSpec(
    name="fashion-mnist",
    title="Fashion-MNIST",
    mirrors=(
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ),
    md5={
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    },
    classes=(
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
    mean=0.2860,
    std=0.3530,
    augment=Augment(pad=2, hflip=True),  # clothes are left-right symmetric
)


def _file_in(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def find_idx_files(
    spec: IdxDatasetSpec, data_dir: str | Path | None = None
) -> dict[str, Path] | None:
    """The four files of the first searched folder that holds all of them, or None."""
    for folder in search_dirs(spec.name, data_dir):
        found = {stem: _file_in(folder, stem) for stem in IDX_FILES}
        if all(found.values()):
            return found  # type: ignore[return-value]
    return None


def download_idx_files(
    spec: IdxDatasetSpec, data_dir: str | Path | None = None, progress: bool | None = None
) -> dict[str, Path]:
    """Download the missing files of ``spec`` and verify their checksums.

    Raises:
        DatasetNotFoundError: a file could not be fetched from any mirror (offline).
    """
    target = download_dir(spec.name, data_dir)
    found = {}
    for stem in IDX_FILES:
        existing = _file_in(target, stem)
        if existing is not None:
            found[stem] = existing
            continue
        urls = [m + stem + ".gz" for m in spec.mirrors]
        try:
            found[stem] = download(
                urls, target / f"{stem}.gz", md5_uncompressed=spec.md5[stem], progress=progress
            )
        except DownloadError as exc:
            raise DatasetNotFoundError(
                not_found_message(
                    spec.title,
                    search_dirs(spec.name, data_dir),
                    [f"{s}[.gz]" for s in IDX_FILES],
                    str(exc),
                )
            ) from None
    return found


def read_idx_split(
    images_path: Path, labels_path: Path, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Read one split's images ``(N, 28, 28)`` and labels ``(N,)`` and check they agree."""
    images = read_idx(images_path, expect_ndim=3, expect_type=0x08)
    labels = read_idx(labels_path, expect_ndim=1, expect_type=0x08)
    if images.shape[0] != labels.shape[0]:
        raise DatasetFormatError(
            f"{images_path} holds {images.shape[0]} images but {labels_path} holds "
            f"{labels.shape[0]} labels"
        )
    if labels.size and int(labels.max()) >= num_classes:
        raise DatasetFormatError(
            f"{labels_path}: label {int(labels.max())} out of range 0..{num_classes - 1}"
        )
    return images, labels


def load_idx_dataset(
    spec: IdxDatasetSpec,
    data_dir: str | Path | None = None,
    *,
    download: bool = True,
    augment: bool = True,
    progress: bool | None = None,
) -> tuple[ImageDataset, ImageDataset]:
    """Load the train and test splits of an IDX dataset (MNIST or Fashion-MNIST).

    Raises:
        DatasetNotFoundError: the files are not found and cannot be downloaded.
        DatasetFormatError: a file is damaged; the message names it.
    """
    files = find_idx_files(spec, data_dir)
    if files is None:
        if not download:
            raise DatasetNotFoundError(
                not_found_message(
                    spec.title,
                    search_dirs(spec.name, data_dir),
                    [f"{s}[.gz]" for s in IDX_FILES],
                    None,
                )
            )
        files = download_idx_files(spec, data_dir, progress)
    n = len(spec.classes)
    train = read_idx_split(files["train-images-idx3-ubyte"], files["train-labels-idx1-ubyte"], n)
    test = read_idx_split(files["t10k-images-idx3-ubyte"], files["t10k-labels-idx1-ubyte"], n)

    def make(split: tuple[np.ndarray, np.ndarray], aug: Augment | None) -> ImageDataset:
        images = torch.from_numpy(split[0]).unsqueeze(1)
        return ImageDataset(
            images,
            torch.from_numpy(split[1].astype(np.int64)),
            name=spec.name,
            mean=(spec.mean,),
            std=(spec.std,),
            classes=spec.classes,
            augment=aug,
        )

    return make(train, spec.augment if augment else None), make(test, None)


def verify_idx_files(spec: IdxDatasetSpec, data_dir: str | Path | None = None) -> dict[str, bool]:
    """Check the MD5 of each file's uncompressed content against the published value."""
    files = find_idx_files(spec, data_dir)
    if files is None:
        raise DatasetNotFoundError(
            not_found_message(spec.title, search_dirs(spec.name, data_dir), list(IDX_FILES), None)
        )
    return {stem: md5_of(path, uncompressed=True) == spec.md5[stem] for stem, path in files.items()}
