"""Helpers the tests share: small datasets written in the official formats."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from squeezer.data.idx import write_idx
from squeezer.data.mnist import IDX_FILES


def make_idx_folder(folder: Path, n_train: int = 60, n_test: int = 20, seed: int = 0,
                    gz: bool = True) -> dict[str, np.ndarray]:
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
