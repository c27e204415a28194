"""Encoding one tensor for the ``.sqz`` file: raw, dense codebook indices, or sparse.

Per tensor the coder picks whichever is smallest of:

- ``raw``: the values at their dtype (biases, BatchNorm, small or unprunable tensors);
- ``dense``: a codebook of at most 255 distinct non-zero values plus an index per element
  (0 = exact zero), for shared-weight layers that are barely pruned;
- ``vq``: codebooks of sub-vectors and one index per sub-vector (product and residual
  quantization), rebuilt with the layer's own formula;
- ``hashed``: a HashedNets bucket vector and its hash seed (the hashes are computed again);
- ``sparse``: relative indices of the stored elements (see :mod:`relative_index`) plus either
  codebook indices (shared weights) or float32 values (pruned only), trying every gap width
  from 1 to 8 bits.

A weight that k-bit quantization froze (:func:`squeezer.quantization.freeze_`) is stored as
``qint``: its integer codes packed at their bit-width (or Huffman coded), with the per-channel
scales and zero points before them; decoding computes ``(q - zero_point) * scale`` in float32,
exactly as the layer did, so the weight comes back bit for bit.

Index and gap streams are Huffman coded (``coding="huffman"``) or packed at fixed width
(``coding="fixed"``, what the paper's "pruning + quantization" column stores).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from squeezer.coding.huffman import (
    average_length,
    code_table_bytes,
    code_table_from_bytes,
    entropy_bits,
    huffman_decode,
    huffman_encode,
    pack_fixed,
    unpack_fixed,
)
from squeezer.coding.relative_index import (
    MAX_RICE_PARAMETER,
    MAX_RICE_VALUES,
    best_rice_parameter,
    decode_gaps,
    encode_gaps,
    rice_decode,
    rice_encode,
)

MAX_CODEBOOK = 255  # codebook indices 1..255; index 0 is the exact zero
MAX_GAP_BITS = 8
MIN_ELEMENTS = 8  # below this a codebook never pays; above, the smallest form wins
MAX_ELEMENTS = 1 << 31  # a header claiming more is refused before anything is allocated

DTYPES = {
    "float32": (torch.float32, "<f4"),
    "float64": (torch.float64, "<f8"),
    "float16": (torch.float16, "<f2"),
    "bfloat16": (torch.bfloat16, "<i2"),  # stored as its bit pattern
    "int64": (torch.int64, "<i8"),
    "int32": (torch.int32, "<i4"),
    "int16": (torch.int16, "<i2"),
    "int8": (torch.int8, "i1"),
    "uint8": (torch.uint8, "u1"),
    "bool": (torch.bool, "?"),
}
TORCH_TO_NAME = {v[0]: k for k, v in DTYPES.items()}


@dataclass
class Encoded:
    """One tensor's header entry (JSON-able) and payload bytes."""

    header: dict[str, Any]
    payload: bytes
    stats: dict[str, Any] = field(default_factory=dict)


def _stream(symbols: np.ndarray, coding: str, width: int) -> tuple[dict[str, Any], bytes, dict]:
    """Code one integer stream; returns its header part, bytes and statistics."""
    if coding == "huffman":
        data, nbits, code = huffman_encode(symbols)
        table = code_table_bytes(code) if symbols.size else b""
        fixed_bytes = (symbols.size * width + 7) // 8
        if len(table) + len(data) <= fixed_bytes:  # a short stream: the table may not pay
            stats = {"avg_bits": average_length(symbols, code), "entropy": entropy_bits(symbols)}
            return {"c": "h", "nb": nbits, "tb": len(table)}, table + data, stats
    data = pack_fixed(symbols, width)
    return (
        {"c": "f", "w": width},
        data,
        {"avg_bits": float(width), "entropy": entropy_bits(symbols)},
    )


def _read_stream(part: dict[str, Any], data: bytes, n: int) -> tuple[np.ndarray, int]:
    """Decode a stream written by :func:`_stream`; returns the symbols and bytes used."""
    if part.get("c") == "h":
        tb, nbits = _int(part, "tb"), _int(part, "nb")
        if n == 0:
            return np.zeros(0, np.int64), 0
        code, used = code_table_from_bytes(data[:tb])
        if used != tb:
            raise ValueError("Huffman table length mismatch")
        nbytes = (nbits + 7) // 8
        if len(data) < tb + nbytes:
            raise ValueError("Huffman stream truncated")
        return huffman_decode(data[tb : tb + nbytes], nbits, code, n), tb + nbytes
    if part.get("c") == "f":
        width = _int(part, "w")
        if not 1 <= width <= 32:
            raise ValueError("bad fixed width")
        nbytes = (n * width + 7) // 8
        return unpack_fixed(data[:nbytes], width, n), nbytes
    raise ValueError(f"unknown stream coding {part.get('c')!r}")


def _int(d: dict[str, Any], key: str) -> int:
    v = d.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise ValueError(f"field {key!r} must be a non-negative integer")
    return v


def _bits_for(k: int) -> int:
    return max(1, int(np.ceil(np.log2(k + 1))))


MAX_QINT_BITS = 32


def _qint_values(q: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor) -> torch.Tensor:
    """``(q - zero_point) * scale`` in float32, per output channel (dimension 0) or per tensor:
    the one formula both the quantized layers and the decoder use."""
    view = (-1,) + (1,) * (q.dim() - 1)
    return (q.to(torch.float32) - zero_point.reshape(view)) * scale.reshape(view)


def encode_qint(
    tensor: torch.Tensor,
    bits: int,
    lo: int,
    scale: torch.Tensor,
    zero_point: torch.Tensor,
    coding: str = "huffman",
) -> Encoded | None:
    """``tensor`` as k-bit codes with scales and zero points, or None if it is not exactly
    ``(q - zero_point) * scale`` for integer codes ``q`` in ``[lo, lo + 2^bits - 1]``."""
    t = tensor.detach().cpu().contiguous()
    if t.dtype != torch.float32 or t.dim() == 0 or not 1 <= bits <= MAX_QINT_BITS:
        return None
    scale = scale.detach().cpu().to(torch.float32).reshape(-1)
    zero_point = zero_point.detach().cpu().to(torch.float32).reshape(-1)
    if scale.numel() not in (1, t.shape[0]) or zero_point.numel() != scale.numel():
        return None
    view = (-1,) + (1,) * (t.dim() - 1)
    q = torch.round(t / scale.reshape(view) + zero_point.reshape(view))
    if not torch.equal(_qint_values(q, scale, zero_point), t):
        return None
    codes = q.to(torch.int64).numpy().ravel() - lo
    if codes.size and (codes.min() < 0 or codes.max() >= 2**bits):
        return None
    part, data, st = _stream(codes, coding if bits <= 8 else "fixed", bits)
    head = {
        "shape": list(t.shape),
        "dtype": "float32",
        "enc": "qint",
        "bits": bits,
        "lo": lo,
        "ch": int(scale.numel()),
        "sym": part,
    }
    payload = scale.numpy().astype("<f4").tobytes() + zero_point.numpy().astype("<f4").tobytes()
    return Encoded(head, payload + data, {"stored": int(codes.size), "sym": st, "bits": bits})


def _decode_qint(header: dict[str, Any], payload: bytes, shape: list[int], numel: int,
                 streams: dict[str, np.ndarray] | None) -> torch.Tensor:  # fmt: skip
    bits, channels = _int(header, "bits"), _int(header, "ch")
    lo = header.get("lo")
    if not isinstance(lo, int) or isinstance(lo, bool) or abs(lo) > 2**MAX_QINT_BITS:
        raise ValueError("field 'lo' must be an integer")
    if not 1 <= bits <= MAX_QINT_BITS:
        raise ValueError("bad bit-width")
    if not shape or channels not in (1, shape[0]):
        raise ValueError("scales do not fit the shape")
    if len(payload) < 8 * channels:
        raise ValueError("scales truncated")
    scale = np.frombuffer(payload[: 4 * channels], dtype="<f4").astype(np.float32)
    zero_point = np.frombuffer(payload[4 * channels : 8 * channels], dtype="<f4").astype(np.float32)
    rest = payload[8 * channels :]
    codes, used = _read_stream(_dict(header, "sym"), rest, numel)
    if codes.size and codes.max() >= 2**bits:
        raise ValueError("code out of range")
    if len(rest) != used:
        raise ValueError(f"{len(rest) - used} unexpected bytes after the data")
    if streams is not None:
        streams.update(sym=codes, scales=scale, zero_points=zero_point)
    q = torch.from_numpy((codes.astype(np.int64) + lo).reshape(shape))
    return _qint_values(q, torch.from_numpy(scale.copy()), torch.from_numpy(zero_point.copy()))


@dataclass
class VQCodes:
    """A vector-quantized tensor: ``indices`` (stages x rows x segments) into ``codebooks``
    (stages x books x 2^bits x subvector)."""

    indices: torch.Tensor
    codebooks: torch.Tensor
    bits: int


@dataclass
class HashCodes:
    """A HashedNets tensor: its bucket vector and hash seed."""

    buckets: torch.Tensor
    seed: int
    signed: bool


def encode_vq(tensor: torch.Tensor, codes: VQCodes, coding: str = "huffman") -> Encoded | None:
    """``tensor`` as codebooks and indices, or None if they do not rebuild it exactly."""
    from squeezer.quantization.vector import vq_weight

    t = tensor.detach().cpu().contiguous()
    books = codes.codebooks.detach().cpu().to(torch.float32).contiguous()
    idx = codes.indices.detach().cpu().to(torch.int64)
    if t.dtype != torch.float32 or idx.dim() != 3 or books.dim() != 4:
        return None
    if not torch.equal(vq_weight(books, idx, tuple(t.shape)), t):
        return None
    stages, rows, segments = idx.shape
    part, data, st = _stream(idx.numpy().ravel(), coding, codes.bits)
    head = {
        "shape": list(t.shape),
        "dtype": "float32",
        "enc": "vq",
        "bits": codes.bits,
        "stages": stages,
        "rows": rows,
        "segs": segments,
        "books": int(books.shape[1]),
        "d": int(books.shape[3]),
        "sym": part,
    }
    payload = books.numpy().astype("<f4").tobytes() + data
    stats = {"stored": int(idx.numel()), "sym": st, "bits": codes.bits, "sym_width": codes.bits}
    return Encoded(head, payload, stats)


def _decode_vq(header: dict[str, Any], payload: bytes, shape: list[int], numel: int,
               streams: dict[str, np.ndarray] | None) -> torch.Tensor:  # fmt: skip
    from squeezer.quantization.vector import MAX_VQ_BITS, vq_weight

    bits, stages, rows = _int(header, "bits"), _int(header, "stages"), _int(header, "rows")
    segs, books, d = _int(header, "segs"), _int(header, "books"), _int(header, "d")
    if not 1 <= bits <= MAX_VQ_BITS or books not in (1, segs) or stages < 1:
        raise ValueError("bad vector-quantization fields")
    if rows * segs * d != numel or not shape or shape[0] != rows:
        raise ValueError("vector quantization does not fit the shape")
    size = stages * books * (2**bits) * d
    if size > MAX_ELEMENTS or len(payload) < 4 * size:
        raise ValueError("codebooks truncated")
    table = np.frombuffer(payload[: 4 * size], dtype="<f4").astype(np.float32)
    rest = payload[4 * size :]
    symbols, used = _read_stream(_dict(header, "sym"), rest, stages * rows * segs)
    if symbols.size and symbols.max() >= 2**bits:
        raise ValueError("codebook index out of range")
    if len(rest) != used:
        raise ValueError(f"{len(rest) - used} unexpected bytes after the data")
    if streams is not None:
        streams["sym"] = symbols
    codebooks = torch.from_numpy(table.copy()).reshape(stages, books, 2**bits, d)
    indices = torch.from_numpy(symbols.astype(np.int64)).reshape(stages, rows, segs)
    return vq_weight(codebooks, indices, tuple(shape))


def encode_hashed(tensor: torch.Tensor, codes: HashCodes) -> Encoded | None:
    """``tensor`` as its hash buckets and seed, or None if they do not rebuild it exactly."""
    from squeezer.quantization.hashed import hash_positions, hashed_weight

    t = tensor.detach().cpu().contiguous()
    buckets = codes.buckets.detach().cpu().to(torch.float32).contiguous()
    if t.dtype != torch.float32 or buckets.dim() != 1 or not 0 < buckets.numel() <= t.numel():
        return None
    index, sign = hash_positions(t.numel(), buckets.numel(), codes.seed)
    if not codes.signed:
        sign = torch.ones_like(sign)
    if not torch.equal(hashed_weight(buckets, index, sign, tuple(t.shape)), t):
        return None
    head = {
        "shape": list(t.shape),
        "dtype": "float32",
        "enc": "hashed",
        "k": int(buckets.numel()),
        "seed": str(codes.seed),
        "signed": bool(codes.signed),
    }
    return Encoded(head, buckets.numpy().astype("<f4").tobytes(), {"stored": buckets.numel()})


def _decode_hashed(header: dict[str, Any], payload: bytes, shape: list[int],
                   numel: int) -> torch.Tensor:  # fmt: skip
    from squeezer.quantization.hashed import hash_positions, hashed_weight

    k = _int(header, "k")
    seed = header.get("seed")
    if not isinstance(seed, str) or not seed.isdigit() or int(seed) >= 2**64:
        raise ValueError("field 'seed' must be a decimal integer below 2^64")
    if not 0 < k <= max(numel, 1) or len(payload) != 4 * k:
        raise ValueError("bucket count does not fit the payload")
    buckets = torch.from_numpy(np.frombuffer(payload, dtype="<f4").astype(np.float32))
    index, sign = hash_positions(numel, k, int(seed))
    if not header.get("signed", True):
        sign = torch.ones_like(sign)
    return hashed_weight(buckets, index, sign, tuple(shape))


def encode_tensor(
    tensor: torch.Tensor,
    coding: str = "huffman",
    codes: tuple[Any, ...] | VQCodes | HashCodes | None = None,
) -> Encoded:
    """Encode ``tensor`` in the smallest of the raw, dense and sparse forms; with ``codes``
    (``(bits, lo, scale, zero_point)`` of a frozen k-bit weight, :class:`VQCodes` or
    :class:`HashCodes`) in that form instead, when it reproduces the tensor exactly."""
    if isinstance(codes, VQCodes):
        packed = encode_vq(tensor, codes, coding)
    elif isinstance(codes, HashCodes):
        packed = encode_hashed(tensor, codes)
    elif codes is not None:
        packed = encode_qint(tensor, *codes, coding=coding)
    else:
        packed = None
    if packed is not None:
        return packed
    name = TORCH_TO_NAME.get(tensor.dtype)
    if name is None:
        raise ValueError(f"cannot store tensors of dtype {tensor.dtype}")
    t = tensor.detach().cpu().contiguous()
    raw_np = (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy()
    raw = raw_np.astype(DTYPES[name][1]).tobytes()
    head = {"shape": list(t.shape), "dtype": name}
    best = Encoded({**head, "enc": "raw"}, raw, {"stored": t.numel()})
    if t.dtype != torch.float32 or t.numel() < MIN_ELEMENTS:
        return best
    values = raw_np.ravel()
    nonzero = np.flatnonzero(values != 0)
    # A sample with too many distinct values settles it without sorting a huge tensor.
    sample = values[nonzero[:: max(1, nonzero.size // 4096)]]
    shared = np.unique(sample).size <= MAX_CODEBOOK
    distinct = np.unique(values[nonzero]) if shared else sample[:0]
    shared = shared and distinct.size <= MAX_CODEBOOK
    candidates = []
    if shared:
        codebook = distinct.astype("<f4").tobytes()
        symbols = np.searchsorted(distinct, values) + 1
        symbols[values == 0] = 0
        width = _bits_for(distinct.size)
        part, data, st = _stream(symbols, coding, width)
        candidates.append(
            Encoded(
                {**head, "enc": "dense", "k": int(distinct.size), "sym": part},
                codebook + data,
                {"stored": values.size, "sym": st, "k": int(distinct.size), "sym_width": width},
            )
        )
    # Without a codebook a stored element costs 32 bits plus its gap: only worth it sparse.
    worth_sparse = shared or nonzero.size < 0.9 * values.size
    for gap_bits in range(1, MAX_GAP_BITS + 1 if worth_sparse else 1):
        fields, filler = encode_gaps(nonzero, gap_bits)
        if fields.size > values.size:
            continue
        gpart, gdata, gst = _stream(fields, coding, gap_bits)
        positions = decode_gaps(fields, gap_bits, values.size)
        stored = values[positions]
        stored[filler] = 0
        if shared:
            symbols = np.searchsorted(distinct, stored) + 1
            symbols[stored == 0] = 0
            width = _bits_for(distinct.size)
            spart, sdata, sst = _stream(symbols, coding, width)
            payload = codebook + sdata + gdata
            header = {
                **head,
                "enc": "sparse",
                "k": int(distinct.size),
                "n": int(fields.size),
                "gw": gap_bits,
                "sym": spart,
                "gap": gpart,
            }
            stats = {"sym": sst, "gap": gst, "k": int(distinct.size), "sym_width": width}
        else:
            payload = stored.astype("<f4").tobytes() + gdata
            header = {
                **head,
                "enc": "sparse",
                "k": 0,
                "n": int(fields.size),
                "gw": gap_bits,
                "gap": gpart,
            }
            stats = {"gap": gst, "k": 0, "sym_width": 32}
        stats.update(stored=int(fields.size), fillers=int(filler.sum()), gap_width=gap_bits)
        candidates.append(Encoded(header, payload, stats))
    if coding == "huffman" and worth_sparse and 0 < nonzero.size <= MAX_RICE_VALUES:
        candidates.append(_rice_sparse(head, values, nonzero, coding, distinct if shared else None))
    for c in candidates:
        if len(c.payload) < len(best.payload):
            best = c
    best.stats.update(nonzero=int(nonzero.size), numel=int(values.size))
    return best


def _rice_sparse(
    head: dict[str, Any],
    values: np.ndarray,
    nonzero: np.ndarray,
    coding: str,
    distinct: np.ndarray | None,
) -> Encoded:
    """The sparse form with the gaps Golomb-Rice coded (``gw`` 0): no filler entries, which
    wins on very sparse tensors whose gaps exceed what 8-bit fields hold."""
    gaps = np.diff(nonzero, prepend=-1) - 1
    b = best_rice_parameter(gaps)
    gdata, gbits = rice_encode(gaps, b)
    stored = values[nonzero]
    header = {**head, "enc": "sparse", "n": int(nonzero.size), "gw": 0}
    header["gap"] = {"c": "r", "b": b, "nb": gbits}
    stats: dict[str, Any] = {"gap_width": 0, "rice": b, "fillers": 0, "stored": int(nonzero.size)}
    stats["gap"] = {"avg_bits": gbits / max(nonzero.size, 1), "entropy": entropy_bits(gaps)}
    if distinct is not None:
        symbols = np.searchsorted(distinct, stored) + 1
        width = _bits_for(distinct.size)
        spart, sdata, sst = _stream(symbols, coding, width)
        header.update(k=int(distinct.size), sym=spart)
        payload = distinct.astype("<f4").tobytes() + sdata + gdata
        stats.update(sym=sst, k=int(distinct.size), sym_width=width)
    else:
        header["k"] = 0
        payload = stored.astype("<f4").tobytes() + gdata
        stats.update(k=0, sym_width=32)
    return Encoded(header, payload, stats)


def decode_tensor(
    header: dict[str, Any], payload: bytes, streams: dict[str, np.ndarray] | None = None
) -> torch.Tensor:
    """Rebuild a tensor from its header entry and payload (inverse of :func:`encode_tensor`).

    If ``streams`` is a dict, the decoded index (``"sym"``) and gap (``"gap"``) streams are
    put in it, for statistics.

    Raises:
        ValueError: the header or payload is inconsistent (the caller names the tensor).
    """
    dtype_name = header.get("dtype")
    if dtype_name not in DTYPES:
        raise ValueError(f"unknown dtype {dtype_name!r}")
    shape = header.get("shape")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise ValueError("shape must be a list of non-negative integers")
    numel = 1
    for d in shape:
        numel *= d
    if numel > MAX_ELEMENTS:
        raise ValueError(f"shape {shape} has too many elements ({numel:,})")
    torch_dtype, np_dtype = DTYPES[dtype_name]
    enc = header.get("enc")
    if enc == "raw":
        itemsize = np.dtype(np_dtype).itemsize
        if len(payload) != numel * itemsize:
            raise ValueError(f"raw payload has {len(payload)} bytes, expected {numel * itemsize}")
        array = np.frombuffer(payload, dtype=np_dtype).copy()
        t = torch.from_numpy(array.astype(np.dtype(np_dtype).newbyteorder("=")))
        if torch_dtype == torch.bfloat16:
            t = t.view(torch.bfloat16)
        return t.reshape(shape)
    if dtype_name == "float32" and enc == "qint":
        return _decode_qint(header, payload, shape, numel, streams)
    if dtype_name == "float32" and enc == "vq":
        return _decode_vq(header, payload, shape, numel, streams)
    if dtype_name == "float32" and enc == "hashed":
        return _decode_hashed(header, payload, shape, numel)
    if dtype_name != "float32" or enc not in ("dense", "sparse"):
        raise ValueError(f"unknown encoding {enc!r} for {dtype_name}")
    k = _int(header, "k")
    if k > MAX_CODEBOOK or (enc == "dense" and k == 0):
        raise ValueError("bad codebook size")
    if len(payload) < 4 * k:
        raise ValueError("codebook truncated")
    table = np.concatenate([[0.0], np.frombuffer(payload[: 4 * k], dtype="<f4")]).astype(np.float32)
    rest = payload[4 * k :]
    out = np.zeros(numel, dtype=np.float32)
    if enc == "dense":
        symbols, used = _read_stream(_dict(header, "sym"), rest, numel)
        _check_symbols(symbols, k)
        out = table[symbols]
        if streams is not None:
            streams["sym"] = symbols
        rest = rest[used:]
    else:
        n = _int(header, "n")
        if n > numel:
            raise ValueError("more stored elements than the tensor has")
        if k:
            symbols, used = _read_stream(_dict(header, "sym"), rest, n)
            _check_symbols(symbols, k)
            stored = table[symbols]
            if streams is not None:
                streams["sym"] = symbols
        else:
            used = 4 * n
            if len(rest) < used:
                raise ValueError("values truncated")
            stored = np.frombuffer(rest[:used], dtype="<f4").astype(np.float32)
        rest = rest[used:]
        gap = _dict(header, "gap")
        if _int(header, "gw") == 0:  # Golomb-Rice coded gaps, no fillers
            fields, used = _read_rice(gap, rest, n)
            if streams is not None:
                streams["gap"] = fields
            positions = np.cumsum(fields + 1) - 1
            if positions.size and positions[-1] >= numel:
                raise ValueError(f"a sparse index points past the tensor's {numel} elements")
        else:
            fields, used = _read_stream(gap, rest, n)
            positions = decode_gaps(fields, _gap_width(header), numel)
        if streams is not None:
            streams["gap"] = fields
        out[positions] = stored
        rest = rest[used:]
    if rest:
        raise ValueError(f"{len(rest)} unexpected bytes after the data")
    return torch.from_numpy(out).reshape(shape)


def _read_rice(part: dict[str, Any], data: bytes, n: int) -> tuple[np.ndarray, int]:
    if part.get("c") != "r":
        raise ValueError("gap width 0 needs a Rice-coded gap stream")
    b, nbits = _int(part, "b"), _int(part, "nb")
    if b > MAX_RICE_PARAMETER or n > MAX_RICE_VALUES:
        raise ValueError("bad Rice stream")
    nbytes = (nbits + 7) // 8
    return rice_decode(data[:nbytes], nbits, b, n), nbytes


def _gap_width(header: dict[str, Any]) -> int:
    width = _int(header, "gw")
    if not 1 <= width <= MAX_GAP_BITS:
        raise ValueError("bad gap width")
    return width


def _dict(header: dict[str, Any], key: str) -> dict[str, Any]:
    v = header.get(key)
    if not isinstance(v, dict):
        raise ValueError(f"missing {key!r} stream description")
    return v


def _check_symbols(symbols: np.ndarray, k: int) -> None:
    if symbols.size and (symbols.min() < 0 or symbols.max() > k):
        raise ValueError("codebook index out of range")
