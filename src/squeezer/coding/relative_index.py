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


MAX_RICE_VALUES = 1 << 17  # decoding is a Python loop: only for very sparse tensors
MAX_RICE_PARAMETER = 24


def rice_encode(values: np.ndarray, b: int) -> tuple[bytes, int]:
    """Golomb-Rice code of non-negative integers with parameter ``b``: the quotient
    ``v >> b`` in unary (ones, then a zero), then the ``b`` low bits, most significant first.
    Near-optimal for the geometric gaps between the non-zeros of a sparse tensor. Returns the
    bytes and the number of bits."""
    v = np.asarray(values, dtype=np.int64)
    q = v >> b
    lengths = q + 1 + b
    ends = np.cumsum(lengths)
    starts = ends - lengths
    total = int(ends[-1]) if v.size else 0
    bits = np.zeros(total, dtype=np.uint8)
    if int(q.sum()):
        first = np.repeat(starts, q)
        within = np.arange(int(q.sum())) - np.repeat(np.cumsum(q) - q, q)
        bits[first + within] = 1
    for j in range(b):
        bits[starts + q + 1 + j] = (v >> (b - 1 - j)) & 1
    return np.packbits(bits).tobytes(), total


def rice_decode(data: bytes, nbits: int, b: int, n: int) -> np.ndarray:
    """Inverse of :func:`rice_encode`.

    Raises:
        ValueError: the bits end before ``n`` values are read, or are left over.
    """
    if nbits > 8 * len(data):
        raise ValueError("Rice stream truncated")
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))[:nbits]
    zeros = np.flatnonzero(bits == 0)
    out = np.zeros(n, dtype=np.int64)
    pos, k = 0, 0
    weights = 1 << np.arange(b - 1, -1, -1, dtype=np.int64)
    for i in range(n):
        k = int(np.searchsorted(zeros, pos, side="left"))
        if k >= zeros.size:
            raise ValueError("Rice stream truncated")
        end = int(zeros[k])
        q = end - pos
        if end + 1 + b > nbits:
            raise ValueError("Rice stream truncated")
        r = int(bits[end + 1 : end + 1 + b] @ weights) if b else 0
        out[i] = (q << b) | r
        pos = end + 1 + b
    if pos != nbits:
        raise ValueError(f"{nbits - pos} unexpected bits after the Rice stream")
    return out


def best_rice_parameter(values: np.ndarray) -> int:
    """The ``b`` that codes ``values`` in the fewest bits."""
    v = np.asarray(values, dtype=np.int64)
    best, best_bits = 0, None
    for b in range(MAX_RICE_PARAMETER + 1):
        bits = int((v >> b).sum()) + v.size * (1 + b)
        if best_bits is None or bits < best_bits:
            best, best_bits = b, bits
    return best
