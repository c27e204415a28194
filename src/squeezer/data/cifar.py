"""CIFAR-10 and CIFAR-100 (Krizhevsky 2009) from the official "python version" batches.

The official batches are Python pickles. They are read with an unpickler that only builds
plain containers and NumPy arrays: a forged batch file cannot run code. Files are read from a
folder of batches or straight out of the official ``.tar.gz`` archive, without extracting it.
"""

from __future__ import annotations

import io
import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
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


@dataclass(frozen=True)
class CifarSpec:
    name: str
    title: str
    folder: str  # the folder inside the archive
    archive: str
    url: str
    md5: str
    train_files: tuple[str, ...]
    test_file: str
    meta_file: str
    label_key: str
    names_key: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


CIFAR10 = CifarSpec(
    name="cifar10",
    title="CIFAR-10",
    folder="cifar-10-batches-py",
    archive="cifar-10-python.tar.gz",
    url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    md5="c58f30108f718f92721af3b95e74349a",
    train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
    test_file="test_batch",
    meta_file="batches.meta",
    label_key="labels",
    names_key="label_names",
    mean=(0.4914, 0.4822, 0.4465),
    std=(0.2470, 0.2435, 0.2616),
)

CIFAR100 = CifarSpec(
    name="cifar100",
    title="CIFAR-100",
    folder="cifar-100-python",
    archive="cifar-100-python.tar.gz",
    url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    md5="eb9058c3a382ffc7106e4002c42a8d85",
    train_files=("train",),
    test_file="test",
    meta_file="meta",
    label_key="fine_labels",
    names_key="fine_label_names",
    mean=(0.5071, 0.4865, 0.4409),
    std=(0.2673, 0.2564, 0.2762),
)

_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles containers and NumPy arrays only; any other global is refused."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")


def unpickle_batch(data: bytes, source: str) -> dict[str, Any]:
    """Decode one CIFAR batch pickle into a dict with str keys.

    Raises:
        DatasetFormatError: the bytes are not a CIFAR batch (or try to load code).
    """
    try:
        obj = _ArrayUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as exc:  # any unpickling failure is a damaged file to the user
        raise DatasetFormatError(f"{source}: not a CIFAR batch file: {exc}") from None
    if not isinstance(obj, dict):
        raise DatasetFormatError(f"{source}: not a CIFAR batch file (no dict inside)")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


class _Source:
    """Reads batch files from a folder or from inside the official archive."""

    def __init__(self, spec: CifarSpec, root: Path) -> None:
        self.spec, self.root = spec, root
        self.archive = root / spec.archive
        self.folder = next(
            (d for d in (root / spec.folder, root) if all((d / f).is_file() for f in self.needed)),
            None,
        )

    @property
    def needed(self) -> tuple[str, ...]:
        return (*self.spec.train_files, self.spec.test_file)

    @property
    def complete(self) -> bool:
        return self.folder is not None or self.archive.is_file()

    def read(self, file: str) -> dict[str, Any]:
        if self.folder is not None:
            path = self.folder / file
            return unpickle_batch(path.read_bytes(), str(path))
        where = f"{self.archive}:{self.spec.folder}/{file}"
        try:
            with tarfile.open(self.archive, "r:*") as tar:
                member = tar.extractfile(f"{self.spec.folder}/{file}")
                if member is None:
                    raise KeyError(file)
                data = member.read()
        except KeyError:
            raise DatasetFormatError(
                f"{self.archive}: archive has no {self.spec.folder}/{file}"
            ) from None
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise DatasetFormatError(f"{self.archive}: damaged archive: {exc}") from None
        return unpickle_batch(data, where)

    def has(self, file: str) -> bool:
        if self.folder is not None:
            return (self.folder / file).is_file()
        try:
            with tarfile.open(self.archive, "r:*") as tar:
                tar.getmember(f"{self.spec.folder}/{file}")
            return True
        except (KeyError, tarfile.TarError, OSError):
            return False


def _split(
    spec: CifarSpec, source: _Source, files: tuple[str, ...]
) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for file in files:
        batch = source.read(file)
        where = f"{spec.title} batch {file}"
        if "data" not in batch or spec.label_key not in batch:
            raise DatasetFormatError(f"{where}: missing 'data' or '{spec.label_key}'")
        data = np.asarray(batch["data"])
        lab = np.asarray(batch[spec.label_key], dtype=np.int64)
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise DatasetFormatError(
                f"{where}: 'data' must be uint8 (N, 3072), got {data.dtype} {data.shape}"
            )
        if lab.shape != (data.shape[0],):
            raise DatasetFormatError(f"{where}: {data.shape[0]} images but {lab.size} labels")
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(lab)
    return np.concatenate(images), np.concatenate(labels)


def load_cifar(
    spec: CifarSpec,
    data_dir: str | Path | None = None,
    *,
    download: bool = True,
    augment: bool = True,
    progress: bool | None = None,
) -> tuple[ImageDataset, ImageDataset]:
    """Load CIFAR-10 or CIFAR-100 (fine labels).

    Raises:
        DatasetNotFoundError: neither batches nor archive found, and the download failed.
        DatasetFormatError: a batch file is damaged.
    """
    dirs = search_dirs(spec.name, data_dir)
    source = next((s for s in (_Source(spec, d) for d in dirs) if s.complete), None)
    if source is None:
        reason = None
        if download:
            target = download_dir(spec.name, data_dir)
            try:
                _download(spec, target, progress)
                source = _Source(spec, target)
            except DownloadError as exc:
                reason = str(exc)
        if source is None:
            raise DatasetNotFoundError(
                not_found_message(
                    spec.title,
                    dirs,
                    [f"{spec.folder}/{f}" for f in source_files(spec)] + [spec.archive],
                    reason,
                )
            )
    train = _split(spec, source, spec.train_files)
    test = _split(spec, source, (spec.test_file,))
    num = 100 if spec is CIFAR100 else 10
    classes: tuple[str, ...] = tuple(str(i) for i in range(num))
    if source.has(spec.meta_file):
        names = source.read(spec.meta_file).get(spec.names_key)
        if names is not None and len(names) == num:
            classes = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    for split, what in ((train, "train"), (test, "test")):
        if split[1].size and (split[1].min() < 0 or split[1].max() >= num):
            raise DatasetFormatError(f"{spec.title} {what}: labels outside 0..{num - 1}")

    def make(split: tuple[np.ndarray, np.ndarray], aug: Augment | None) -> ImageDataset:
        return ImageDataset(
            torch.from_numpy(split[0]),
            torch.from_numpy(split[1]),
            name=spec.name,
            mean=spec.mean,
            std=spec.std,
            classes=classes,
            augment=aug,
        )

    return make(train, Augment(pad=4, hflip=True) if augment else None), make(test, None)


def source_files(spec: CifarSpec) -> tuple[str, ...]:
    return (*spec.train_files, spec.test_file, spec.meta_file)


def _download(spec: CifarSpec, target: Path, progress: bool | None) -> None:
    download([spec.url], target / spec.archive, md5=spec.md5, progress=progress)
