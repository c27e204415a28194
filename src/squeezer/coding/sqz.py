"""The ``.sqz`` file: a compressed model that loads back bit-exactly, without running code.

Layout (all integers little-endian)::

    8 bytes   magic  89 53 51 5A 0D 0A 1A 0A  ("\\x89SQZ\\r\\n\\x1a\\n", as PNG does)
    4 bytes   header length H
    H bytes   header: UTF-8 JSON (format version, how to rebuild the model, one entry per
              tensor: shape, dtype, encoding, and its section's offset, length and CRC-32)
    4 bytes   CRC-32 of the header
    ...       payload: the tensors' sections, back to back

Loading checks the magic, the version, both checksums and every length against the file,
validates each entry before decoding it, rebuilds the architecture (a zoo model by name, or the
user's own freshly built instance passed as ``model=``), replays the recorded surgery on it
(:mod:`squeezer.core.arch`) and loads the weights with ``strict=True``. Nothing is unpickled or
evaluated, ever.
"""

from __future__ import annotations

import copy
import json
import os
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from squeezer.coding.huffman import entropy_bits
from squeezer.coding.tensor_codec import TORCH_TO_NAME, decode_tensor, encode_tensor
from squeezer.core import describe, plain_state_dict
from squeezer.errors import ConfigError, SqzFormatError, SurgeryError

MAGIC = b"\x89SQZ\r\n\x1a\n"
VERSION = 2  # 2: the header may be zlib-compressed JSON (1: plain JSON only)
MAX_HEADER = 64 << 20


@dataclass
class TensorReport:
    """What one tensor costs in the file, for ``squeezer inspect`` and the pipeline tables."""

    name: str
    shape: list[int]
    encoding: str
    bytes: int
    numel: int
    nonzero: int
    codebook: int = 0
    index_bits: int | None = None  # fixed width of a codebook index (before Huffman)
    gap_bits: int | None = None
    index_avg_bits: float | None = None  # Huffman average code length
    index_entropy: float | None = None
    gap_avg_bits: float | None = None
    gap_entropy: float | None = None
    stored: int = 0  # entries written (non-zeros plus fillers) for sparse tensors
    code_range: list[int] | None = None  # qint: the smallest and largest integer code
    scales: list[float] | None = None  # qint: per output channel (or one)
    zero_points: list[float] | None = None

    @property
    def sparsity(self) -> float:
        return 1.0 - self.nonzero / self.numel if self.numel else 0.0


@dataclass
class SqzContents:
    header: dict[str, Any]
    tensors: dict[str, torch.Tensor]
    reports: list[TensorReport] = field(default_factory=list)
    file_bytes: int = 0


def encode_model(
    model: nn.Module,
    coding: str = "huffman",
    meta: dict[str, Any] | None = None,
    input_shape: Sequence[int] | None = None,
) -> bytes:
    """The bytes of ``model``'s ``.sqz`` file (see :func:`save`)."""
    from squeezer import __version__
    from squeezer.quantization.qat import frozen_copy, quantized_layers, weight_codes
    from squeezer.train.penalty import finish_, has_trained_parametrizations

    if has_trained_parametrizations(model):  # sparse VD, soft sharing: their deployed form
        model = copy.deepcopy(model)
        finish_(model)
    if quantized_layers(model):  # k-bit weights: stored as their codes
        model = frozen_copy(model)
    codes: dict[str, Any] = dict(weight_codes(model))
    codes.update(_vector_and_hash_codes(model))
    arch = describe(model, input_shape)
    entries, sections, offset = [], [], 0
    for name, tensor in plain_state_dict(model).items():
        enc = encode_tensor(tensor, coding, codes.get(name))
        crc = zlib.crc32(enc.payload)
        entries.append(
            {"name": name, **enc.header, "off": offset, "len": len(enc.payload), "crc": crc}
        )
        sections.append(enc.payload)
        offset += len(enc.payload)
    header = {
        "format": "sqz",
        "version": VERSION,
        "squeezer": __version__,
        "arch": arch,
        "input_shape": list(arch.get("input_shape") or ()),
        "meta": dict(meta or {}),
        "payload_bytes": offset,
        "tensors": entries,
    }
    head = _pack_header(header)
    return b"".join(
        [MAGIC, struct.pack("<I", len(head)), head, struct.pack("<I", zlib.crc32(head)), *sections]
    )


def _vector_and_hash_codes(model: nn.Module) -> dict[str, Any]:
    """``name.weight`` -> the codes of every vector-quantized or hashed weight."""
    from squeezer.coding.tensor_codec import HashCodes, VQCodes
    from squeezer.quantization.hashed import hashed_codes
    from squeezer.quantization.vector import vq_codes

    out: dict[str, Any] = {}
    for name, module in model.named_modules():
        key = f"{name}.weight" if name else "weight"
        vq = vq_codes(module)
        if vq is not None:
            out[key] = VQCodes(*vq)
        hashed = hashed_codes(module)
        if hashed is not None:
            out[key] = HashCodes(*hashed)
    return out


def save(
    model: nn.Module,
    path: str | Path,
    *,
    coding: str = "huffman",
    meta: dict[str, Any] | None = None,
    input_shape: Sequence[int] | None = None,
) -> Path:
    """Write ``model``, any ``nn.Module``, as a ``.sqz`` file (atomically).

    Masks and shared-weight parametrizations are baked into a copy first; ``model`` is left
    as it is. Every tensor is stored in its smallest form (see
    :mod:`squeezer.coding.tensor_codec`). The header records how to rebuild the architecture:
    a zoo model's name and arguments, or, for the user's own model, its class name; in both
    cases the surgery squeezer did on it (removed channels, factorized layers).

    Args:
        model: the model.
        path: the file to write.
        coding: ``"huffman"`` or ``"fixed"`` (fixed-width index fields, no Huffman).
        meta: plain data to keep in the header (dataset, accuracy...).
        input_shape: the shape of one input example (default: ``model.input_shape``).

    Returns:
        The path written.
    """
    if coding not in ("huffman", "fixed"):
        raise ConfigError("coding must be 'huffman' or 'fixed'")
    data = encode_model(model, coding, meta, input_shape)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def _pack_header(header: dict[str, Any]) -> bytes:
    """The header as JSON, zlib-compressed when that is smaller (it usually is: the tensor
    entries repeat the same keys; on a LeNet-5 compressed 400x it is a third of the file)."""
    plain = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
    packed = zlib.compress(plain, 9)
    return packed if len(packed) < len(plain) else plain


def _unpack_header(head: bytes) -> bytes:
    """The header's JSON bytes, from plain JSON (version 1 files) or zlib-compressed JSON."""
    if head[:1] == b"{":
        return head
    inflate = zlib.decompressobj()
    plain = inflate.decompress(head, MAX_HEADER)
    if inflate.unconsumed_tail or not inflate.eof:
        raise zlib.error("the compressed header is truncated or larger than allowed")
    return plain


def _fail(path: Path | str, message: str) -> SqzFormatError:
    return SqzFormatError(f"{path}: {message}")


def parse(
    data: bytes, source: str = "<bytes>", expected: dict[str, torch.Tensor] | None = None
) -> SqzContents:
    """Decode ``.sqz`` bytes into the header and the tensors.

    If ``expected`` (a ``state_dict`` of the rebuilt model) is given, every tensor's shape and
    dtype are checked against it before anything is decoded.

    Raises:
        SqzFormatError: the bytes are not a valid ``.sqz`` file; the message says why.
    """
    header = parse_header(data, source)
    hlen = struct.unpack_from("<I", data, len(MAGIC))[0]
    start = len(MAGIC) + 4
    payload = data[start + hlen + 4 :]
    declared = header["payload_bytes"]
    if len(payload) < declared:
        raise _fail(
            source, f"truncated: {len(payload)} payload bytes, the header declares {declared}"
        )
    if len(payload) > declared:
        raise _fail(source, f"{len(payload) - declared} unexpected bytes after the payload")
    entries = header.get("tensors")
    if not isinstance(entries, list):
        raise _fail(source, "header lacks the tensor list")
    return _decode_all(header, entries, payload, declared, source, expected, len(data))


def parse_header(data: bytes, source: str = "<bytes>") -> dict[str, Any]:
    """Check the framing of ``.sqz`` bytes and return the header (tensors not decoded)."""
    if len(data) < len(MAGIC) + 8:
        raise _fail(source, f"too short to be a .sqz file ({len(data)} bytes)")
    if data[: len(MAGIC)] != MAGIC:
        raise _fail(source, "not a .sqz file (wrong magic bytes)")
    (hlen,) = struct.unpack_from("<I", data, len(MAGIC))
    start = len(MAGIC) + 4
    if hlen > MAX_HEADER or start + hlen + 4 > len(data):
        raise _fail(
            source,
            f"truncated: the header needs {hlen} bytes, the file has "
            f"{max(len(data) - start - 4, 0)} after the magic",
        )
    head = data[start : start + hlen]
    (crc,) = struct.unpack_from("<I", data, start + hlen)
    if zlib.crc32(head) != crc:
        raise _fail(source, "corrupted header (CRC-32 mismatch)")
    try:
        header = json.loads(_unpack_header(head).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, zlib.error) as exc:
        raise _fail(source, f"header is not valid JSON: {exc}") from None
    if not isinstance(header, dict) or header.get("format") != "sqz":
        raise _fail(source, "header does not describe a .sqz file")
    version = header.get("version")
    if not isinstance(version, int) or version < 1:
        raise _fail(source, f"invalid format version {version!r}")
    if version > VERSION:
        raise _fail(
            source,
            f"format version {version} is newer than this squeezer reads "
            f"({VERSION}); upgrade squeezer",
        )
    declared = header.get("payload_bytes")
    if not isinstance(declared, int) or declared < 0:
        raise _fail(source, "header lacks a valid payload_bytes")
    return header


def _decode_all(
    header: dict[str, Any],
    entries: list[Any],
    payload: bytes,
    declared: int,
    source: str,
    expected: dict[str, torch.Tensor] | None,
    file_bytes: int,
) -> SqzContents:
    tensors: dict[str, torch.Tensor] = {}
    reports = []
    for entry in entries:
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or name in tensors:
            raise _fail(source, "a tensor entry has a missing or repeated name")
        off, length, crc = (entry.get(k) for k in ("off", "len", "crc"))
        if not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (off, length, crc)
        ):
            raise _fail(source, f"tensor {name}: invalid section offset/length/CRC")
        if off + length > declared:
            raise _fail(source, f"tensor {name}: section runs past the end of the payload")
        if expected is not None:
            ref = expected.get(name)
            if ref is None:
                raise _fail(source, f"tensor {name} is not part of the model")
            if entry.get("shape") != list(ref.shape):
                raise _fail(
                    source,
                    f"tensor {name}: shape {entry.get('shape')} does not fit "
                    f"the model's {list(ref.shape)}",
                )
            if entry.get("dtype") != TORCH_TO_NAME.get(ref.dtype):
                raise _fail(
                    source,
                    f"tensor {name}: dtype {entry.get('dtype')} does not fit "
                    f"the model's {ref.dtype}",
                )
        section = payload[off : off + length]
        if zlib.crc32(section) != crc:
            raise _fail(source, f"tensor {name}: corrupted data (CRC-32 mismatch)")
        streams: dict[str, np.ndarray] = {}
        try:
            tensors[name] = decode_tensor(entry, section, streams)
        except (ValueError, TypeError, KeyError, OverflowError, MemoryError) as exc:
            raise _fail(source, f"tensor {name}: {exc}") from None
        reports.append(_report(name, entry, tensors[name], length, streams))
    return SqzContents(header=header, tensors=tensors, reports=reports, file_bytes=file_bytes)


def _report(
    name: str,
    entry: dict[str, Any],
    tensor: torch.Tensor,
    nbytes: int,
    streams: dict[str, np.ndarray],
) -> TensorReport:
    r = TensorReport(
        name=name,
        shape=list(tensor.shape),
        encoding=entry["enc"],
        bytes=nbytes,
        numel=tensor.numel(),
        nonzero=int(torch.count_nonzero(tensor)),
        codebook=int(entry.get("k", 0) or 0),
        stored=int(entry.get("n", 0) or 0),
    )
    if r.codebook:
        r.index_bits = max(1, int(np.ceil(np.log2(r.codebook + 1))))
    if r.encoding == "vq":  # codewords: stages x books x 2^bits
        r.index_bits = int(entry["bits"])
        r.codebook = int(entry["stages"]) * int(entry["books"]) * 2 ** int(entry["bits"])
    if r.encoding == "hashed":
        r.index_bits = None
    if r.encoding == "qint":
        r.index_bits = int(entry["bits"])
        r.code_range = [int(entry["lo"]), int(entry["lo"]) + 2 ** int(entry["bits"]) - 1]
        r.scales = [float(v) for v in streams.get("scales", [])]
        r.zero_points = [float(v) for v in streams.get("zero_points", [])]
    if "gw" in entry:
        r.gap_bits = int(entry["gw"])
    for key, attr in (("sym", "index"), ("gap", "gap")):
        part, symbols = entry.get(key), streams.get(key)
        if isinstance(part, dict) and symbols is not None and symbols.size:
            coded = part.get("c") in ("h", "r")  # Huffman or Rice: the bits actually used
            avg = part["nb"] / symbols.size if coded else float(part["w"])
            setattr(r, f"{attr}_avg_bits", avg)
            setattr(r, f"{attr}_entropy", entropy_bits(symbols))
    return r


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise _fail(path, "no such file") from None
    except IsADirectoryError:
        raise _fail(path, "is a folder, not a .sqz file") from None


def read(path: str | Path) -> SqzContents:
    """Read and fully validate a ``.sqz`` file (tensors decoded, model not built)."""
    return parse(_read_bytes(Path(path)), str(path))


def load(path: str | Path, model: nn.Module | None = None, *, sparse: bool = False) -> nn.Module:
    """Rebuild the model stored in a ``.sqz`` file, with bit-identical weights, in eval mode.

    Args:
        path: the file.
        model: a freshly built instance of the architecture the file was saved from, needed
            when that is not a zoo model (the user's own network); the recorded surgery is
            replayed on it and it is returned with the file's weights.
        sparse: run fully connected layers that are at least half zeros with CSR sparse
            kernels (:func:`squeezer.pruning.sparsify_`); off by default.

    Raises:
        SqzFormatError: the file is truncated, corrupted or forged, names an architecture
            this squeezer does not have, needs ``model=``, or does not fit ``model``.
    """
    model, _ = load_with_header(path, model)
    if sparse:
        from squeezer.pruning.sparse import sparsify_

        sparsify_(model)
    return model


def load_with_header(
    path: str | Path, model: nn.Module | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """:func:`load` without the sparse option, also returning the file's header."""
    path = Path(path)
    data = _read_bytes(path)
    given = model is not None
    model = _rebuild(parse_header(data, str(path)), path, model)
    try:
        contents = parse(data, str(path), expected=model.state_dict())
    except SqzFormatError as err:
        if given and ("does not fit" in str(err) or "not part of" in str(err)):
            raise SqzFormatError(f"{err} (the file was not saved from this model)") from None
        raise
    return _load_into(model, contents, path), contents.header


def build(
    contents: SqzContents, path: str | Path = "<bytes>", model: nn.Module | None = None
) -> nn.Module:
    """The model a parsed ``.sqz`` file describes, with its weights loaded, in eval mode.

    ``model``, if given, is a fresh instance of the saved architecture (see :func:`load`).
    """
    return _load_into(_rebuild(contents.header, path, model), contents, path)


def _load_into(model: nn.Module, contents: SqzContents, path: str | Path) -> nn.Module:
    try:
        model.load_state_dict(contents.tensors, strict=True)
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        raise _fail(path, "tensors do not fit the model: " + "; ".join(lines[1:3])) from None
    shape = contents.header.get("input_shape")
    if shape and not getattr(model, "input_shape", None):
        model.input_shape = tuple(shape)
    return model.eval()


def _rebuild(header: dict[str, Any], path: str | Path, model: nn.Module | None = None) -> nn.Module:
    from squeezer.models import rebuild

    arch = header.get("arch")
    if not isinstance(arch, dict):
        raise _fail(path, "header does not say how to rebuild the model")
    try:
        return rebuild(arch, model)
    except SurgeryError as exc:
        raise _fail(path, str(exc)) from None


def is_sqz(path: str | Path) -> bool:
    """Whether ``path`` starts with the ``.sqz`` magic bytes."""
    try:
        with open(path, "rb") as fh:
            return fh.read(len(MAGIC)) == MAGIC
    except OSError:
        return False
