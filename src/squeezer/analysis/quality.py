"""How close a compressed model's outputs stay to the original's, without labels."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from squeezer.analysis.counting import as_tuple


def _tensor(out: Any) -> Tensor:
    """A model's output as one tensor (a Hugging Face output object: its main field)."""
    if isinstance(out, Tensor):
        return out
    for key in ("logits", "sentence_embedding", "pooler_output", "last_hidden_state"):
        value = out.get(key) if isinstance(out, dict) else getattr(out, key, None)
        if isinstance(value, Tensor):
            return value
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], Tensor):
        return out[0]
    raise TypeError(f"cannot read a tensor from a {type(out).__name__} output")


@torch.no_grad()
def output_similarity(reference: nn.Module, candidate: nn.Module, batches: Iterable[Any]) -> float:
    """Mean cosine similarity between the two models' outputs, one per example.

    For a sentence encoder this is the usual check of a compressed encoder: the embeddings of
    the same sentences before and after (1.0: the same directions). Each batch is the model's
    input (a tensor or a tuple of tensors); outputs are flattened per example.
    """
    total, count = 0.0, 0
    was = reference.training, candidate.training
    reference.eval()
    candidate.eval()
    try:
        for batch in batches:
            inputs = as_tuple(batch)
            a = _tensor(reference(*inputs)).flatten(1).float()
            b = _tensor(candidate(*inputs)).flatten(1).float()
            total += float(F.cosine_similarity(a, b, dim=1).sum())
            count += a.shape[0]
    finally:
        reference.train(was[0])
        candidate.train(was[1])
    if count == 0:
        raise ValueError("output_similarity needs at least one batch")
    return total / count
