"""Coding: Huffman and relative-index coding, and the ``.sqz`` container.

sq.save(model, "model.sqz"); model = sq.load("model.sqz")
"""

from __future__ import annotations

from squeezer.coding.huffman import (
    HuffmanCode,
    average_length,
    entropy_bits,
    huffman_code,
    huffman_decode,
    huffman_encode,
    pack_fixed,
    unpack_fixed,
)
from squeezer.coding.relative_index import decode_gaps, encode_gaps
from squeezer.coding.sqz import (
    SqzContents,
    TensorReport,
    build,
    encode_model,
    is_sqz,
    load,
    parse,
    read,
    save,
)
from squeezer.coding.tensor_codec import decode_tensor, encode_tensor

__all__ = [
    "HuffmanCode",
    "SqzContents",
    "TensorReport",
    "average_length",
    "build",
    "decode_gaps",
    "decode_tensor",
    "encode_gaps",
    "encode_model",
    "encode_tensor",
    "entropy_bits",
    "huffman_code",
    "huffman_decode",
    "huffman_encode",
    "is_sqz",
    "load",
    "pack_fixed",
    "parse",
    "read",
    "save",
    "unpack_fixed",
]
