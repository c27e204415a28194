"""Transfer sets for model compression by labelling (Bucila, Caruana & Niculescu-Mizil 2006):
when the original training data is small, a student learns a teacher (often an ensemble) from
many more unlabelled examples, which the teacher labels.

- :func:`munge`: MUNGE's synthetic examples for tabular-like inputs. Each example and its
  nearest neighbour exchange, attribute by attribute with probability ``p``, values drawn
  from a normal around the other's value with standard deviation ``|a - b| / s``.
- :func:`unlabelled`: batches of inputs with placeholder targets, for ``sq.distill`` with a
  method that never reads the labels (``Logits(alpha=1)`` or ``KD(alpha=1)``); images get
  their variety from the dataset's own augmentation instead.
"""

from __future__ import annotations

import torch
from torch import Tensor

from squeezer.errors import ConfigError


def munge(
    x: Tensor, rounds: int = 1, p: float = 0.5, s: float = 1.0, seed: int = 0, chunk: int = 2048
) -> Tensor:
    """``rounds`` x ``len(x)`` synthetic examples made from ``x`` (examples in rows, any
    trailing shape, continuous attributes).

    Args:
        x: the examples.
        rounds: passes over the data (each makes ``len(x)`` new examples).
        p: probability that an attribute is exchanged with the neighbour's.
        s: local variance parameter: the drawn value's standard deviation is
            ``|a - b| / s`` (large ``s``: the neighbour's value itself).
        seed: the random draws.
        chunk: rows per block of the nearest-neighbour search.

    Raises:
        ConfigError: fewer than two examples, ``p`` outside [0, 1], ``s`` <= 0.
    """
    if x.shape[0] < 2:
        raise ConfigError("munge: needs at least two examples")
    if not 0 <= p <= 1:
        raise ConfigError("munge: p must be in [0, 1]")
    if s <= 0:
        raise ConfigError("munge: s must be > 0")
    flat = x.reshape(x.shape[0], -1).float()
    neighbour = torch.empty(flat.shape[0], dtype=torch.long)
    for start in range(0, flat.shape[0], chunk):
        d = torch.cdist(flat[start : start + chunk], flat)
        rows = torch.arange(start, min(start + chunk, flat.shape[0]))
        d[rows - start, rows] = float("inf")  # not itself
        neighbour[start : start + chunk] = d.argmin(1)
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(rounds):
        e = flat.clone()
        other = flat[neighbour]
        swap = torch.rand(e.shape, generator=g) < p
        sd = (e - other).abs() / s
        drawn = other + sd * torch.randn(e.shape, generator=g)
        e[swap] = drawn[swap]
        out.append(e)
    return torch.cat(out).reshape(-1, *x.shape[1:]).to(x.dtype)


def unlabelled(x: Tensor, batch_size: int = 128) -> list[tuple[Tensor, Tensor]]:
    """``x`` in batches with placeholder targets (zeros), for teacher-labelled training."""
    return [
        (x[i : i + batch_size], torch.zeros(len(x[i : i + batch_size]), dtype=torch.long))
        for i in range(0, len(x), batch_size)
    ]
