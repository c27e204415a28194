"""Sparse storage with relative indices (Han et al. 2016, section 4 and Figure 3).

The positions of the non-zero weights are stored as the gap to the previous non-zero, in a
field of fixed width w. A gap larger than 2^w cannot be written directly: a *filler* entry
(a zero weight 2^w positions further on) is inserted instead, as many times as needed. A field
holds gap - 1, so every value 0..2^w - 1 is used.
"""

from __future__ import annotations

import numpy as np


def encode_gaps(positions: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Gap fields for sorted flat ``positions`` of non-zeros.

    Returns:
        ``(fields, is_filler)``: one entry per stored element, fillers included.
    """
    positions = np.asarray(positions, dtype=np.int64)
    if positions.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, bool)
    step = 1 << width
    gaps = np.diff(positions, prepend=-1)
    if (gaps < 1).any():
        raise ValueError("positions must be strictly increasing and >= 0")
    fillers = (gaps - 1) >> width
    last = (gaps - 1) & (step - 1)
    count = fillers + 1
    fields = np.full(int(count.sum()), step - 1, dtype=np.int64)
    ends = np.cumsum(count) - 1
    fields[ends] = last
    is_filler = np.ones(fields.size, dtype=bool)
    is_filler[ends] = False
    return fields, is_filler


def decode_gaps(fields: np.ndarray, width: int, size: int) -> np.ndarray:
    """Flat positions of every stored element (fillers included) from the gap fields.

    Raises:
        ValueError: a field does not fit the width, or a position falls outside ``size``.
    """
    fields = np.asarray(fields, dtype=np.int64)
    if fields.size and (fields.min() < 0 or fields.max() >= 1 << width):
        raise ValueError(f"gap field outside 0..{(1 << width) - 1}")
    positions = np.cumsum(fields + 1) - 1
    if positions.size and positions[-1] >= size:
        raise ValueError(f"a sparse index points past the tensor's {size} elements")
    return positions
