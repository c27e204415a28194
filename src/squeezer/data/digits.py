"""scikit-learn's bundled 8x8 ``digits`` (UCI), resized to MNIST's 28x28 layout.

Used only as the demo's fallback when MNIST can be neither found nor downloaded: it ships with
scikit-learn, so it is always there. Each 8x8 image is scaled to 20x20 and centred in 28x28,
as MNIST centres its digits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from squeezer.data.dataset import Augment, ImageDataset

TEST_FRACTION = 0.2


def load_digits(*, augment: bool = True, seed: int = 0) -> tuple[ImageDataset, ImageDataset]:
    """The 1,797 digits split 80/20 into train and test with a fixed seed."""
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    x = torch.from_numpy(bunch.images).to(torch.float32).unsqueeze(1) / 16.0
    x = F.pad(F.interpolate(x, size=(20, 20), mode="bilinear", align_corners=False), (4,) * 4)
    images = (x.clamp(0, 1) * 255).round().to(torch.uint8)
    labels = torch.from_numpy(bunch.target).to(torch.int64)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    n_test = int(len(labels) * TEST_FRACTION)
    test_idx, train_idx = order[:n_test], order[n_test:]
    scaled = images[train_idx].to(torch.float32) / 255
    mean, std = (float(scaled.mean()),), (float(scaled.std()),)
    classes = tuple(str(i) for i in range(10))

    def make(idx: torch.Tensor, aug: Augment | None) -> ImageDataset:
        return ImageDataset(
            images[idx],
            labels[idx],
            name="digits",
            mean=mean,
            std=std,
            classes=classes,
            augment=aug,
        )

    return make(train_idx, Augment(pad=2) if augment else None), make(test_idx, None)
