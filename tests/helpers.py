"""Helpers the tests share: small datasets written in the official formats."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from squeezer.data.idx import write_idx
from squeezer.data.mnist import IDX_FILES


def make_idx_folder(
    folder: Path, n_train: int = 60, n_test: int = 20, seed: int = 0, gz: bool = True
) -> dict[str, np.ndarray]:
    """Write a small MNIST-shaped dataset in the standard IDX files; return its arrays."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test) % 10).astype(np.uint8),
    }
    for stem in IDX_FILES:
        write_idx(folder / (stem + (".gz" if gz else "")), arrays[stem])
    return arrays


CIFAR10_NAMES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]


def _cifar10_batch(n: int, seed: int) -> dict[bytes, object]:
    # The official batches are Python 2 pickles: read with encoding="bytes", keys are bytes.
    rng = np.random.default_rng(seed)
    return {
        b"batch_label": b"training batch",
        b"labels": [int(v) for v in rng.integers(0, 10, n)],
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }


def write_cifar10(root: Path, n: int = 7) -> dict[str, dict[bytes, object]]:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = {f"data_batch_{i}": _cifar10_batch(n, i) for i in range(1, 6)}
    batches["test_batch"] = _cifar10_batch(n, 99)
    for name, batch in batches.items():
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    meta = {b"label_names": [s.encode() for s in CIFAR10_NAMES], b"num_cases_per_batch": n}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return batches


def bn_statistics_(model, seed: int = 1):
    """Give every BatchNorm2d running statistics that are not the identity (so a forgotten
    BatchNorm channel, or a fold that ignores them, shows), and put the model in eval mode."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return model.eval()
