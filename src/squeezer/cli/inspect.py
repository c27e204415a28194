"""``squeezer inspect``: what a .sqz file holds, tensor by tensor.

One module per command: its options (:func:`add_parser`) beside its body (:func:`run`).
"""

from __future__ import annotations

import argparse
from typing import Any

from squeezer.cli.common import (
    json_option,
    write_json,
)


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "inspect",
        help="what a .sqz file holds, tensor by tensor",
        description="Per tensor: shape, encoding (raw, dense or sparse codebook, "
        "intK for k-bit quantized weights, whose scales and zero points follow the table, vq "
        "for product/residual quantization (codebook: codewords in all), hashed for HashedNets "
        "(codebook: buckets)), "
        "sparsity, codebook index width, codebook size, Huffman average code length beside "
        "the entropy, relative-index width, bytes.",
    )
    p.add_argument("file", metavar="FILE", help="a .sqz file")
    json_option(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from squeezer.coding import read

    contents = read(args.file)
    header = contents.header
    arch = header.get("arch") or {}
    rows = []
    for r in contents.reports:

        def pair(a: float | None, b: float | None) -> str:
            return "" if a is None or b is None else f"{a:.2f}/{b:.2f}"

        rows.append(
            (
                r.name,
                "x".join(map(str, r.shape)) or "scalar",
                f"int{r.index_bits}" if r.encoding == "qint" else r.encoding,
                f"{r.sparsity:.3f}",
                str(r.index_bits or ""),
                str(r.codebook or ""),
                pair(r.index_avg_bits, r.index_entropy),
                str(r.gap_bits or ""),
                pair(r.gap_avg_bits, r.gap_entropy),
                f"{r.bytes:,}",
            )
        )
    head = (
        "tensor",
        "shape",
        "encoding",
        "sparsity",
        "idx bits",
        "codebook",
        "huffman/entropy",
        "gap bits",
        "gap huff/entropy",
        "bytes",
    )
    widths = [max(len(x) for x in col) for col in zip(head, *rows, strict=True)]
    if arch.get("name"):
        built = f"zoo model {arch['name']} {arch.get('kwargs', {})}"
    else:  # the user's own architecture: loads into a fresh instance (--model / model=)
        built = f"user model {arch.get('class', '?')}"
        if arch.get("factory"):
            built += f" (built by {arch['factory']})"
    edits = len(arch.get("surgery") or [])
    print(
        f"{args.file}: .sqz version {header.get('version')}, {built}, "
        f"{edits} recorded module replacement(s)"
    )
    for line in (head, ["-" * w for w in widths], *rows):
        print(
            "  ".join(
                c.ljust(w) if i < 3 else c.rjust(w)
                for i, (c, w) in enumerate(zip(line, widths, strict=True))
            )
        )
    payload = sum(r.bytes for r in contents.reports)
    float_bytes = sum(4 * r.numel for r in contents.reports)
    print(
        f"payload {payload:,} bytes + header and framing {contents.file_bytes - payload:,} = "
        f"{contents.file_bytes:,} bytes; the same tensors as float32: {float_bytes:,} bytes "
        f"({float_bytes / contents.file_bytes:.1f}x)"
    )
    quantized = [r for r in contents.reports if r.encoding == "qint"]
    if quantized:
        print("k-bit weights: value = (code - zero point) * scale, per output channel or tensor")
        for r in quantized:
            sc, zp, lo_hi = r.scales or [0.0], r.zero_points or [0.0], r.code_range or [0, 0]
            zps = f"{zp[0]:g}" if len(set(zp)) == 1 else f"{min(zp):g}..{max(zp):g}"
            print(
                f"  {r.name}: {r.index_bits}-bit codes in [{lo_hi[0]}, {lo_hi[1]}], "
                f"{len(sc)} scale(s) {min(sc):.4g}..{max(sc):.4g}, zero point(s) {zps}"
            )
    print(
        "bits: idx = codebook index width (k-bit code width for intK) before Huffman, "
        "gap = relative-index field width; "
        "huffman/entropy = average Huffman code length / Shannon entropy, bits per symbol"
    )
    write_json(
        args.json,
        {
            "file": args.file,
            "file_bytes": contents.file_bytes,
            "header_bytes": contents.file_bytes - payload,
            "arch": arch,
            "meta": header.get("meta", {}),
            "float32_bytes": float_bytes,
            "tensors": [vars(r) | {"sparsity": r.sparsity} for r in contents.reports],
        },
    )
    return 0
