"""Normalization, augmentation and the batched loader."""

from __future__ import annotations

import pytest
import torch

import squeezer as sq
from squeezer.data import Augment, ImageDataset, augment_batch


def _dataset(n: int = 10, augment: Augment | None = None) -> ImageDataset:
    images = torch.arange(n * 2 * 4 * 4, dtype=torch.int64).remainder(256).to(torch.uint8)
    return ImageDataset(
        images.view(n, 2, 4, 4),
        torch.arange(n) % 3,
        name="toy",
        mean=(0.5, 0.25),
        std=(0.5, 0.125),
        classes=("a", "b", "c"),
        augment=augment,
    )


def test_normalize_per_channel() -> None:
    ds = _dataset()
    x, y = ds[3]
    raw = ds.images[3].float() / 255
    torch.testing.assert_close(x[0], (raw[0] - 0.5) / 0.5)
    torch.testing.assert_close(x[1], (raw[1] - 0.25) / 0.125)
    assert y == 0 and ds.input_shape == (2, 4, 4) and ds.num_classes == 3


def test_random_crop_is_a_shift_of_the_padded_image() -> None:
    batch = torch.randint(1, 256, (64, 1, 6, 6), dtype=torch.uint8)
    out = augment_batch(batch, Augment(pad=2), torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(batch, (2, 2, 2, 2))
    shifts = set()
    for i in range(64):
        matches = [
            (dy, dx)
            for dy in range(5)
            for dx in range(5)
            if torch.equal(out[i], padded[i, :, dy : dy + 6, dx : dx + 6])
        ]
        assert matches, f"image {i} is not a crop of its padded original"
        shifts.add(matches[0])
    assert len(shifts) > 10  # offsets really vary


def test_hflip_flips_about_half() -> None:
    batch = torch.randint(0, 256, (400, 1, 3, 5), dtype=torch.uint8)
    out = augment_batch(batch, Augment(hflip=True), torch.Generator().manual_seed(1))
    flipped = sum(
        torch.equal(o, b.flip(-1)) and not torch.equal(o, b)
        for o, b in zip(out, batch, strict=True)
    )
    same = sum(torch.equal(o, b) for o, b in zip(out, batch, strict=True))
    assert flipped + same == 400 and 150 < flipped < 250


def test_loader_batches_cover_the_data_once_per_epoch() -> None:
    ds = _dataset(10)
    loader = sq.data.loader(ds, 4, shuffle=True, seed=3)
    assert len(loader) == 3
    labels = torch.cat([y for _, y in loader])
    assert sorted(labels.tolist()) == sorted(ds.labels.tolist())
    assert len(sq.data.loader(ds, 4, drop_last=True)) == 2


def test_loader_epoch_order_is_a_function_of_seed_and_epoch() -> None:
    ds = _dataset(50, Augment(pad=1))
    a = sq.data.loader(ds, 8, shuffle=True, seed=5)
    b = sq.data.loader(ds, 8, shuffle=True, seed=5)
    first = [x for x, _ in a]
    second = [x for x, _ in a]  # next epoch: different order
    b.set_epoch(1)
    again = [x for x, _ in b]
    assert not all(torch.equal(p, q) for p, q in zip(first, second, strict=True))
    assert all(torch.equal(p, q) for p, q in zip(second, again, strict=True))


def test_subset_and_example_inputs() -> None:
    ds = _dataset(10)
    sub = ds.subset([1, 3])
    assert len(sub) == 2 and sub.labels.tolist() == [1, 0]
    assert sq.data.example_inputs(ds, 2).shape == (2, 2, 4, 4)


def test_bad_construction() -> None:
    with pytest.raises(ValueError, match="uint8"):
        ImageDataset(
            torch.zeros(2, 1, 3, 3), torch.zeros(2), name="x", mean=(0,), std=(1,), classes=("a",)
        )
    with pytest.raises(ValueError, match="labels"):
        ImageDataset(
            torch.zeros(2, 1, 3, 3, dtype=torch.uint8),
            torch.zeros(3),
            name="x",
            mean=(0,),
            std=(1,),
            classes=("a",),
        )


def test_digits_fallback_looks_like_mnist() -> None:
    train, test = sq.data.load("digits")
    assert train.input_shape == (1, 28, 28) and train.num_classes == 10
    assert len(train) + len(test) == 1797
    border = train.images[:, :, :3, :]
    assert int(border.max()) == 0  # digits centred with an empty margin, as in MNIST
