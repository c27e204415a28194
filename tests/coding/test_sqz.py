"""The .sqz file: bit-exact round trips, and damaged or forged files refused clearly."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import squeezer as sq
from squeezer.coding import encode_model, parse
from squeezer.coding.sqz import MAGIC
from squeezer.errors import SqzFormatError
from squeezer.pruning import Magnitude, prune_
from squeezer.quantization import KMeansSharing, quantize_
from squeezer.surgery import baked_copy


@pytest.fixture(scope="module")
def compressed_lenet5() -> torch.nn.Module:
    torch.manual_seed(0)
    model = sq.models.create("lenet5")
    prune_(model, Magnitude(per_layer={"conv1": 0.3, "conv2": 0.85, "fc1": 0.95, "fc2": 0.8}))
    quantize_(model, KMeansSharing(conv_bits=8, fc_bits=5))
    return model


def _assert_bit_exact(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = baked_copy(a).state_dict(), b.state_dict()
    assert set(sa) == set(sb)
    for k in sa:
        assert sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]), k


@pytest.mark.parametrize("coding", ["huffman", "fixed"])
def test_round_trip_bit_exact(compressed_lenet5, tmp_path: Path, coding: str) -> None:
    path = sq.save(compressed_lenet5, tmp_path / "m.sqz", coding=coding, meta={"k": 1})
    loaded = sq.load(path)
    _assert_bit_exact(compressed_lenet5, loaded)
    assert sq.coding.read(path).header["meta"] == {"k": 1}
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(loaded(x), compressed_lenet5.eval()(x))
    assert path.stat().st_size < 1_724_320 / 15


def test_huffman_is_smaller_than_fixed(compressed_lenet5) -> None:
    assert len(encode_model(compressed_lenet5)) < len(encode_model(compressed_lenet5, "fixed"))


def test_plain_and_pruned_only_models_round_trip(tmp_path: Path) -> None:
    dense = sq.models.create("lenet300")
    _assert_bit_exact(dense, sq.load(sq.save(dense, tmp_path / "d.sqz")))
    pruned = sq.models.create("lenet300")
    prune_(pruned, Magnitude(sparsity=0.9))
    path = sq.save(pruned, tmp_path / "p.sqz")
    _assert_bit_exact(pruned, sq.load(path))
    kinds = {r.name: r.encoding for r in sq.coding.read(path).reports}
    assert kinds["fc1.weight"] == "sparse" and kinds["fc1.bias"] == "raw"


def test_user_model_saves_and_needs_a_fresh_instance_to_load(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    path = sq.save(model, tmp_path / "user.sqz")
    with pytest.raises(SqzFormatError, match=r"cannot rebuild by itself.*model="):
        sq.load(path)
    fresh = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    _assert_bit_exact(model, sq.load(path, model=fresh))
    other = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.ReLU(), torch.nn.Linear(5, 2))
    with pytest.raises(SqzFormatError, match="not saved from this model"):
        sq.load(path, model=other)
    header = sq.coding.read(path).header
    assert header["arch"]["class"] == "torch.nn.modules.container.Sequential"


def _rebuild(data: bytes, header: dict) -> bytes:
    head = json.dumps(header).encode()
    payload = data[len(MAGIC) + 8 + struct.unpack_from("<I", data, len(MAGIC))[0] :]
    return (
        MAGIC + struct.pack("<I", len(head)) + head + struct.pack("<I", zlib.crc32(head)) + payload
    )


@pytest.fixture(scope="module")
def good(compressed_lenet5) -> bytes:
    return encode_model(compressed_lenet5)


def test_truncated(good: bytes) -> None:
    with pytest.raises(SqzFormatError, match="truncated"):
        parse(good[:-100])
    with pytest.raises(SqzFormatError, match="truncated"):
        parse(good[:200])
    with pytest.raises(SqzFormatError, match="too short"):
        parse(good[:10])


def test_trailing_bytes(good: bytes) -> None:
    with pytest.raises(SqzFormatError, match="unexpected bytes"):
        parse(good + b"x")


def test_corrupted_payload_names_the_tensor(good: bytes) -> None:
    bad = bytearray(good)
    bad[-50] ^= 0xFF
    with pytest.raises(SqzFormatError, match=r"tensor fc2\.weight: corrupted data"):
        parse(bytes(bad))


def test_corrupted_header(good: bytes) -> None:
    bad = bytearray(good)
    bad[20] ^= 0x01
    with pytest.raises(SqzFormatError, match="corrupted header"):
        parse(bytes(bad))


def test_not_sqz(tmp_path: Path) -> None:
    with pytest.raises(SqzFormatError, match="wrong magic"):
        parse(b"PK\x03\x04" + bytes(100))
    with pytest.raises(SqzFormatError, match="no such file"):
        sq.load(tmp_path / "missing.sqz")


def _header(good: bytes) -> dict:
    from squeezer.coding.sqz import _unpack_header

    hlen = struct.unpack_from("<I", good, len(MAGIC))[0]
    return json.loads(_unpack_header(good[len(MAGIC) + 4 : len(MAGIC) + 4 + hlen]))


def test_header_is_compressed_and_plain_json_headers_still_load(good: bytes) -> None:
    hlen = struct.unpack_from("<I", good, len(MAGIC))[0]
    header = _header(good)
    plain = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
    assert hlen < len(plain) / 2  # zlib: the tensor entries repeat the same keys
    old = dict(header, version=1)  # a version-1 file: plain JSON
    contents = parse(_rebuild(good, old))
    assert set(contents.tensors) == {t["name"] for t in header["tensors"]}


def test_compressed_header_that_inflates_too_far_is_refused(good: bytes, monkeypatch) -> None:
    import squeezer.coding.sqz as sqz

    hlen = struct.unpack_from("<I", good, len(MAGIC))[0]
    monkeypatch.setattr(sqz, "MAX_HEADER", hlen + 10)  # the packed header fits, not inflated
    with pytest.raises(SqzFormatError, match="larger than allowed"):
        parse(good)


def test_forged_architecture_refused(good: bytes, tmp_path: Path) -> None:
    header = _header(good)
    header["arch"] = {"name": "os.system", "kwargs": {}}
    path = tmp_path / "forged.sqz"
    path.write_bytes(_rebuild(good, header))
    with pytest.raises(SqzFormatError, match="cannot rebuild the model: unknown model"):
        sq.load(path)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("shape", [10**6, 10**6], "too many elements"),
        ("enc", "pickle", "unknown encoding"),
        ("dtype", "object", "unknown dtype"),
        ("off", -1, "invalid section"),
        ("len", 10**9, "runs past"),
        ("k", 300, "bad codebook size"),
    ],
)
def test_forged_tensor_entries(good: bytes, field: str, value: object, message: str) -> None:
    header = _header(good)
    entry = next(t for t in header["tensors"] if t["name"] == "fc1.weight")
    entry[field] = value
    with pytest.raises(SqzFormatError, match=message):
        parse(_rebuild(good, header))


def test_shapes_checked_against_the_model_before_decoding(good: bytes, tmp_path: Path) -> None:
    header = _header(good)
    entry = next(t for t in header["tensors"] if t["name"] == "fc1.weight")
    entry["shape"] = [800, 500]
    path = tmp_path / "m.sqz"
    path.write_bytes(_rebuild(good, header))
    with pytest.raises(SqzFormatError, match=r"shape \[800, 500\] does not fit the model's"):
        sq.load(path)


def test_newer_version_refused(good: bytes) -> None:
    header = _header(good)
    header["version"] = 99
    with pytest.raises(SqzFormatError, match="newer than this squeezer reads"):
        parse(_rebuild(good, header))


def test_weights_that_do_not_fit_the_model(good: bytes, tmp_path: Path) -> None:
    header = _header(good)
    header["arch"]["kwargs"] = {"num_classes": 7}
    path = tmp_path / "m.sqz"
    path.write_bytes(_rebuild(good, header))
    with pytest.raises(SqzFormatError, match="does not fit the model's"):
        sq.load(path)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzzed_bytes_never_crash_otherwise(good: bytes, data: st.DataObject) -> None:
    raw = bytearray(good)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        raw = raw[: data.draw(st.integers(0, len(raw)))]
    try:
        contents = parse(bytes(raw))
    except SqzFormatError:
        return
    # a change that survives every check must not have changed any tensor
    reference = parse(good).tensors
    assert all(torch.equal(contents.tensors[k], reference[k]) for k in reference)


def test_rice_coded_gaps_for_very_sparse_tensors() -> None:
    import numpy as np

    from squeezer.coding.relative_index import best_rice_parameter, rice_decode, rice_encode
    from squeezer.coding.tensor_codec import decode_tensor, encode_tensor

    rng = np.random.default_rng(0)
    values = rng.geometric(1 / 300, size=500) - 1
    b = best_rice_parameter(values)
    data, nbits = rice_encode(values, b)
    assert np.array_equal(rice_decode(data, nbits, b, values.size), values)
    with pytest.raises(ValueError, match="truncated"):
        rice_decode(data[:-4], nbits, b, values.size)
    # a 400,000-element weight with 1,200 non-zeros on 15 values: Rice beats 8-bit fields
    w = torch.zeros(500, 800)
    flat = w.view(-1)
    pos = torch.from_numpy(rng.choice(flat.numel(), 1200, replace=False))
    flat[pos] = torch.from_numpy(rng.integers(1, 16, 1200).astype("float32")) / 16
    enc = encode_tensor(w)
    assert enc.header["enc"] == "sparse" and enc.header["gw"] == 0
    assert enc.header["gap"]["c"] == "r"
    assert torch.equal(decode_tensor(enc.header, enc.payload), w)
    gap_bits = enc.header["gap"]["nb"] / 1200
    assert gap_bits < 11.5  # entropy of the gaps is about log2(e * 333) = 9.8 bits
