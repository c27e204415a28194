"""Datasets: MNIST, Fashion-MNIST, CIFAR-10/100, SVHN and scikit-learn's digits.

    train, test = squeezer.data.load("mnist")            # searches the usual folders
    batches = squeezer.data.loader(train, batch_size=128, shuffle=True, seed=0)

See :mod:`squeezer.data.files` for where files are looked for and how they are downloaded.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from pathlib import Path

from squeezer.data.cifar import CIFAR10, CIFAR100, load_cifar
from squeezer.data.dataset import (
    Augment,
    BatchLoader,
    ImageDataset,
    augment_batch,
    example_inputs,
    loader,
)
from squeezer.data.digits import load_digits
from squeezer.data.files import ENV_VAR, search_dirs
from squeezer.data.idx import read_idx, write_idx
from squeezer.data.mnist import FASHION_MNIST, MNIST, load_idx_dataset, verify_idx_files
from squeezer.data.svhn import load_svhn
from squeezer.errors import UnknownNameError

Loader = Callable[..., tuple[ImageDataset, ImageDataset]]

_DATASETS: dict[str, Loader] = {
    "mnist": lambda data_dir, **kw: load_idx_dataset(MNIST, data_dir, **kw),
    "fashion-mnist": lambda data_dir, **kw: load_idx_dataset(FASHION_MNIST, data_dir, **kw),
    "cifar10": lambda data_dir, **kw: load_cifar(CIFAR10, data_dir, **kw),
    "cifar100": lambda data_dir, **kw: load_cifar(CIFAR100, data_dir, **kw),
    "svhn": lambda data_dir, **kw: load_svhn(data_dir, **kw),
    "digits": lambda data_dir, augment=True, **kw: load_digits(augment=augment),
}

_ALIASES = {
    "fashion_mnist": "fashion-mnist",
    "fashionmnist": "fashion-mnist",
    "fmnist": "fashion-mnist",
    "cifar-10": "cifar10",
    "cifar_10": "cifar10",
    "cifar-100": "cifar100",
    "cifar_100": "cifar100",
}


def list_datasets() -> list[str]:
    """Names accepted by :func:`load`."""
    return sorted(_DATASETS)


def canonical_name(name: str) -> str:
    """The registered name for ``name`` or one of its aliases.

    Raises:
        UnknownNameError: the dataset is not known; the message suggests close names.
    """
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in _DATASETS:
        close = difflib.get_close_matches(key, [*_DATASETS, *_ALIASES], n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnknownNameError(
            f"unknown dataset {name!r}{hint} (known: {', '.join(list_datasets())})"
        )
    return key


def load(
    name: str,
    data_dir: str | Path | None = None,
    *,
    download: bool = True,
    augment: bool = True,
    progress: bool | None = None,
) -> tuple[ImageDataset, ImageDataset]:
    """Load the train and test splits of a dataset.

    Args:
        name: one of :func:`list_datasets` (aliases like ``fashion_mnist`` work too).
        data_dir: a folder to look in first (the files themselves or a ``name/`` folder).
        download: fetch missing files from the dataset's public mirrors (checksums verified).
        augment: give the training split its usual light augmentation (random crop with
            padding; horizontal flips for Fashion-MNIST and CIFAR).
        progress: show download progress (default: when standard error is a terminal).

    Returns:
        ``(train, test)``, two :class:`ImageDataset`.

    Raises:
        UnknownNameError: unknown dataset name.
        DatasetNotFoundError: files missing and not downloadable; the message names the
            folders searched, the files and the ``SQUEEZER_DATA`` variable.
        DatasetFormatError: a file is damaged; the message names it.
    """
    key = canonical_name(name)
    if key == "digits":
        return load_digits(augment=augment)
    return _DATASETS[key](data_dir, download=download, augment=augment, progress=progress)


__all__ = [
    "CIFAR10",
    "CIFAR100",
    "ENV_VAR",
    "FASHION_MNIST",
    "MNIST",
    "Augment",
    "BatchLoader",
    "ImageDataset",
    "augment_batch",
    "canonical_name",
    "example_inputs",
    "list_datasets",
    "load",
    "loader",
    "read_idx",
    "search_dirs",
    "verify_idx_files",
    "write_idx",
]
