"""Reader for the IDX format of MNIST and Fashion-MNIST (LeCun et al.).

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of dimensions),
one big-endian uint32 per dimension, then the data in row-major, big-endian order. Files may be
gzip-compressed; compression is detected from the content, not the file name.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from squeezer.errors import DatasetFormatError

# type code -> (numpy dtype, name)
IDX_TYPES: dict[int, tuple[str, str]] = {
    0x08: (">u1", "ubyte"),
    0x09: (">i1", "byte"),
    0x0B: (">i2", "short"),
    0x0C: (">i4", "int"),
    0x0D: (">f4", "float"),
    0x0E: (">f8", "double"),
}

GZIP_MAGIC = b"\x1f\x8b"


def read_bytes(path: str | Path) -> bytes:
    """Return the content of ``path``, decompressed if it is gzip data.

    Raises:
        DatasetFormatError: the file is gzip data but truncated or corrupted.
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] != GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as exc:
        raise DatasetFormatError(
            f"{path}: damaged gzip data (truncated or corrupted): {exc}"
        ) from None


def parse_idx(
    data: bytes,
    *,
    source: str = "<bytes>",
    expect_ndim: int | None = None,
    expect_type: int | None = None,
) -> np.ndarray:
    """Parse IDX bytes into a native-endian NumPy array.

    Args:
        data: the uncompressed file content.
        source: the file name used in error messages.
        expect_ndim: if given, the number of dimensions the magic number must declare.
        expect_type: if given, the type code the magic number must declare (0x08 for ubyte).

    Raises:
        DatasetFormatError: wrong magic number, truncated data or trailing bytes.
    """
    if len(data) < 4:
        raise DatasetFormatError(f"{source}: truncated IDX file ({len(data)} bytes, no header)")
    magic = int.from_bytes(data[:4], "big")
    zero, type_code, ndim = data[0] | data[1], data[2], data[3]
    expected = None
    if expect_type is not None and expect_ndim is not None:
        expected = (expect_type << 8) | expect_ndim
    if zero != 0 or type_code not in IDX_TYPES or ndim == 0:
        hint = f", expected 0x{expected:08X}" if expected is not None else ""
        raise DatasetFormatError(
            f"{source}: wrong magic number 0x{magic:08X}{hint}; not an IDX file"
        )
    if expected is not None and magic != expected:
        kind = IDX_TYPES[expect_type][1] if expect_type in IDX_TYPES else "?"
        raise DatasetFormatError(
            f"{source}: wrong magic number 0x{magic:08X}, expected 0x{expected:08X} "
            f"({kind}, {expect_ndim} dimension{'s' if expect_ndim != 1 else ''})"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetFormatError(f"{source}: truncated IDX header ({len(data)} bytes)")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(IDX_TYPES[type_code][0])
    need = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    have = len(data) - header
    if have < need:
        raise DatasetFormatError(
            f"{source}: truncated: header declares shape {shape} ({need} bytes of data) "
            f"but only {have} bytes follow"
        )
    if have > need:
        raise DatasetFormatError(
            f"{source}: {have - need} unexpected bytes after the {need} declared by shape {shape}"
        )
    array = np.frombuffer(data, dtype=dtype, count=need // dtype.itemsize, offset=header)
    return array.reshape(shape).astype(dtype.newbyteorder("="), copy=True)


def read_idx(
    path: str | Path, *, expect_ndim: int | None = None, expect_type: int | None = None
) -> np.ndarray:
    """Read an IDX file (gzipped or not) into a NumPy array.

    Args:
        path: the file.
        expect_ndim: if given, the number of dimensions the file must declare.
        expect_type: if given, the IDX type code the file must declare.

    Returns:
        The array, in native byte order.

    Raises:
        DatasetFormatError: the file is damaged or not an IDX file; the message names the file.
    """
    return parse_idx(
        read_bytes(path), source=str(path), expect_ndim=expect_ndim, expect_type=expect_type
    )


def write_idx(path: str | Path, array: np.ndarray, *, compress: bool | None = None) -> None:
    """Write ``array`` as an IDX file (gzip-compressed if ``compress`` or the name ends .gz)."""
    path = Path(path)
    array = np.asarray(array)
    codes = {np.dtype(v[0]).newbyteorder("="): k for k, v in IDX_TYPES.items()}
    key = array.dtype.newbyteorder("=")
    if key not in codes:
        raise ValueError(f"IDX cannot store dtype {array.dtype}")
    big = array.astype(np.dtype(IDX_TYPES[codes[key]][0]))
    header = bytes([0, 0, codes[key], array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    payload = header + big.tobytes()
    if compress if compress is not None else path.suffix == ".gz":
        payload = gzip.compress(payload, mtime=0)
    path.write_bytes(payload)
