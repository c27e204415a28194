"""In-memory image datasets and a fast batched loader.

The small datasets squeezer trains on (MNIST, Fashion-MNIST, CIFAR, SVHN) fit in memory as
uint8 tensors. Normalization and augmentation are applied per batch with tensor operations,
which on a 2-core CPU is many times faster than a per-sample ``DataLoader`` pipeline. The
datasets are still ordinary ``torch.utils.data.Dataset`` objects for users who prefer one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from squeezer.config import Config, check
from squeezer.errors import ConfigError


@dataclass(frozen=True)
class Augment(Config):
    """Light training augmentation.

    Attributes:
        pad: random crop of the original size from the image zero-padded by this many pixels.
        hflip: random horizontal flip with probability 1/2 (not for digits).
    """

    pad: int = 0
    hflip: bool = False

    def validate(self) -> None:
        check(self.pad >= 0, f"Augment.pad must be >= 0, got {self.pad}")

    @property
    def active(self) -> bool:
        return self.pad > 0 or self.hflip


class ImageDataset(torch.utils.data.Dataset):
    """Images held as a uint8 tensor ``(N, C, H, W)`` with int64 labels.

    Items are normalized float tensors ``(C, H, W)`` and integer labels; when ``augment`` is
    set, each access draws a random crop/flip from the global torch generator.

    Args:
        images: uint8 tensor of shape ``(N, C, H, W)``.
        labels: int64 tensor of shape ``(N,)``.
        name: the dataset's name (``"mnist"``...).
        mean: per-channel mean of the [0, 1]-scaled pixels, used to normalize.
        std: per-channel standard deviation, used to normalize.
        classes: class names, index = label.
        augment: training augmentation, or None.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        *,
        name: str,
        mean: Sequence[float],
        std: Sequence[float],
        classes: Sequence[str],
        augment: Augment | None = None,
    ) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ConfigError(
                f"images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}"
            )
        if labels.shape != (images.shape[0],):
            raise ConfigError(f"{images.shape[0]} images but labels of shape {tuple(labels.shape)}")
        if len(mean) != images.shape[1] or len(std) != images.shape[1]:
            raise ConfigError("mean and std need one value per channel")
        self.images = images
        self.labels = labels.to(torch.int64)
        self.name = name
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.classes = tuple(classes)
        self.augment = augment if augment is not None and augment.active else None

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        x = self.transform(self.images[index : index + 1])
        return x[0], int(self.labels[index])

    def __repr__(self) -> str:
        aug = f", augment={self.augment}" if self.augment else ""
        return (
            f"ImageDataset({self.name!r}, n={len(self)}, "
            f"shape={self.input_shape}, classes={self.num_classes}{aug})"
        )

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        _, c, h, w = self.images.shape
        return int(c), int(h), int(w)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def normalize(self, batch: Tensor) -> Tensor:
        """uint8 ``(B, C, H, W)`` to normalized float32."""
        mean = torch.tensor(self.mean).view(1, -1, 1, 1)
        std = torch.tensor(self.std).view(1, -1, 1, 1)
        return (batch.to(torch.float32) / 255.0 - mean) / std

    def transform(self, batch: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Augment (if this dataset has augmentation) and normalize a uint8 batch."""
        if self.augment is not None:
            batch = augment_batch(batch, self.augment, generator)
        return self.normalize(batch)

    def subset(self, indices: int | Sequence[int] | Tensor) -> ImageDataset:
        """A dataset of the first ``indices`` items (an int) or of the given indices."""
        if isinstance(indices, int):
            indices = torch.arange(min(indices, len(self)))
        idx = torch.as_tensor(indices, dtype=torch.int64)
        return ImageDataset(
            self.images[idx],
            self.labels[idx],
            name=self.name,
            mean=self.mean,
            std=self.std,
            classes=self.classes,
            augment=self.augment,
        )

    def without_augment(self) -> ImageDataset:
        return ImageDataset(
            self.images,
            self.labels,
            name=self.name,
            mean=self.mean,
            std=self.std,
            classes=self.classes,
            augment=None,
        )

    def class_counts(self) -> list[int]:
        return torch.bincount(self.labels, minlength=self.num_classes).tolist()


def augment_batch(
    batch: Tensor, augment: Augment, generator: torch.Generator | None = None
) -> Tensor:
    """Random crop with zero padding and random horizontal flips, per image, vectorized."""
    b, _, h, w = batch.shape
    if augment.pad > 0:
        p = augment.pad
        padded = F.pad(batch, (p, p, p, p))
        oy = torch.randint(0, 2 * p + 1, (b,), generator=generator)
        ox = torch.randint(0, 2 * p + 1, (b,), generator=generator)
        rows = (oy[:, None] + torch.arange(h))[:, None, :, None]
        cols = (ox[:, None] + torch.arange(w))[:, None, None, :]
        batch = padded[
            torch.arange(b)[:, None, None, None],
            torch.arange(batch.shape[1])[None, :, None, None],
            rows,
            cols,
        ]
    if augment.hflip:
        flip = torch.rand(b, generator=generator) < 0.5
        batch = torch.where(flip[:, None, None, None], batch.flip(-1), batch)
    return batch


class BatchLoader:
    """Iterates over ``(inputs, labels)`` batches of an :class:`ImageDataset`.

    Shuffling and augmentation draw from a generator seeded by ``(seed, epoch)``, so an epoch's
    batches are the same whether training ran straight through or resumed from a checkpoint.
    Each iteration advances the epoch unless :meth:`set_epoch` is called first.

    Args:
        dataset: the images.
        batch_size: images per batch.
        shuffle: shuffle every epoch.
        seed: base seed of the shuffling and augmentation.
        drop_last: drop the last incomplete batch.
    """

    def __init__(
        self,
        dataset: ImageDataset,
        batch_size: int = 128,
        *,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.epoch = 0
        self._epoch_set = False

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration produce the batches of ``epoch``."""
        self.epoch = epoch
        self._epoch_set = True

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        if not self._epoch_set and self._started:
            self.epoch += 1
        self._epoch_set = False
        self._started = True
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        n = len(self.dataset)
        order = torch.randperm(n, generator=gen) if self.shuffle else torch.arange(n)
        for i in range(len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            x = self.dataset.transform(self.dataset.images[idx], gen)
            yield x, self.dataset.labels[idx]

    _started = False


def loader(
    dataset: ImageDataset,
    batch_size: int = 128,
    *,
    shuffle: bool = False,
    seed: int = 0,
    drop_last: bool = False,
) -> BatchLoader:
    """A :class:`BatchLoader` over ``dataset`` (see its documentation)."""
    return BatchLoader(dataset, batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last)


def example_inputs(dataset: ImageDataset, n: int = 1) -> Tensor:
    """The first ``n`` normalized, unaugmented images of ``dataset``, for tracing or measuring."""
    return dataset.normalize(dataset.images[:n])
