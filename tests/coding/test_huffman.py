"""Huffman coding, fixed-width packing and relative indices: property-based round trips."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from squeezer.coding import (
    average_length,
    decode_gaps,
    encode_gaps,
    entropy_bits,
    huffman_decode,
    huffman_encode,
    pack_fixed,
    unpack_fixed,
)
from squeezer.coding.huffman import code_table_bytes, code_table_from_bytes

symbol_lists = st.lists(st.integers(0, 255), max_size=400)


@settings(max_examples=150, deadline=None)
@given(symbol_lists)
def test_huffman_round_trip_and_length_within_one_bit_of_entropy(symbols: list[int]) -> None:
    x = np.array(symbols, dtype=np.int64)
    data, nbits, code = huffman_encode(x)
    assert len(data) == (nbits + 7) // 8
    np.testing.assert_array_equal(huffman_decode(data, nbits, code, x.size), x)
    if x.size:
        avg, h = average_length(x, code), entropy_bits(x)
        assert avg == pytest.approx(nbits / x.size)
        assert h - 1e-9 <= avg < h + 1 or (np.unique(x).size == 1 and avg == 1)
        table = code_table_bytes(code)
        assert code_table_from_bytes(table) == (code, len(table))


def test_empty_and_one_symbol() -> None:
    data, nbits, code = huffman_encode(np.array([], dtype=np.int64))
    assert (data, nbits) == (b"", 0)
    assert huffman_decode(data, nbits, code, 0).size == 0
    data, nbits, code = huffman_encode(np.array([7] * 5))
    assert nbits == 5  # one symbol: a 1-bit code
    np.testing.assert_array_equal(huffman_decode(data, nbits, code, 5), [7] * 5)


def test_decoding_the_wrong_count_fails() -> None:
    data, nbits, code = huffman_encode(np.array([1, 2, 3, 1, 1]))
    with pytest.raises(ValueError, match="expected 6"):
        huffman_decode(data, nbits, code, 6)


def test_skewed_source_beats_fixed_width() -> None:
    rng = np.random.default_rng(0)
    x = rng.geometric(0.5, 10000).clip(max=31)
    data, _, _ = huffman_encode(x)
    assert len(data) < len(pack_fixed(x, 5)) * 0.5


@settings(max_examples=100, deadline=None)
@given(
    st.integers(1, 16).flatmap(
        lambda w: st.tuples(st.just(w), st.lists(st.integers(0, (1 << w) - 1), max_size=200))
    )
)
def test_fixed_width_round_trip(case: tuple[int, list[int]]) -> None:
    width, values = case
    x = np.array(values, dtype=np.int64)
    np.testing.assert_array_equal(unpack_fixed(pack_fixed(x, width), width, x.size), x)


@settings(max_examples=150, deadline=None)
@given(st.sets(st.integers(0, 5000), max_size=300), st.integers(1, 8))
def test_relative_indices_round_trip(positions: set[int], width: int) -> None:
    pos = np.array(sorted(positions), dtype=np.int64)
    fields, filler = encode_gaps(pos, width)
    assert fields.max(initial=0) < 1 << width
    decoded = decode_gaps(fields, width, 5001)
    np.testing.assert_array_equal(decoded[~filler], pos)
    gaps = np.diff(pos, prepend=-1)
    assert filler.sum() == ((gaps - 1) >> width).sum()  # one filler per 2^w of excess gap


def test_gap_longer_than_the_field_uses_fillers() -> None:
    # 3-bit fields reach 8 positions; position 20 after position 1 needs two fillers
    fields, filler = encode_gaps(np.array([1, 20]), 3)
    np.testing.assert_array_equal(fields, [1, 7, 7, 2])
    np.testing.assert_array_equal(filler, [False, True, True, False])
    np.testing.assert_array_equal(decode_gaps(fields, 3, 21), [1, 9, 17, 20])
    with pytest.raises(ValueError, match="past the tensor"):
        decode_gaps(fields, 3, 20)
