"""``squeezer quantize``: int8 on a real integer backend, or k-bit quantization-aware training
(QAT, LSQ, DoReFa, fixed point) stored packed in ``.sqz``.

One module per command: its options (:func:`add_parser`) beside its body (:func:`run`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from squeezer.cli.common import (
    UsageError,
    check_fits,
    data_options,
    dataset_splits,
    device_option,
    distill_option,
    fit_on_device,
    info,
    json_option,
    load_model,
    model_argument,
    model_options,
    parse_ints,
    positive,
    positive_float,
    write_json,
)

KBIT = {
    "qat": "QAT", "lsq": "LSQ", "dorefa": "DoReFa", "fixed": "FixedPoint",
    "binaryconnect": "BinaryConnect", "binarynet": "BinaryNet", "xnor": "XNOR", "bwn": "XNOR",
    "lab": "LAB",
    "twn": "TWN", "ttq": "TTQ", "ternaryconnect": "TernaryConnect",
}  # fmt: skip
CODEBOOK = {
    "kmeans": "KMeansSharing", "pq": "ProductQuantization", "rq": "ResidualQuantization",
    "hashednets": "HashedNets",
}  # fmt: skip
METHODS = ("int8", *KBIT, *CODEBOOK, "sws")
NATIVE_BITS = {
    "binaryconnect": 1, "binarynet": 1, "xnor": 1, "bwn": 1, "lab": 1, "twn": 2, "ttq": 2,
    "ternaryconnect": 2,
}  # fmt: skip


def add_parser(sub: Any) -> None:
    from squeezer.quantization import OBSERVERS

    p = sub.add_parser(
        "quantize",
        help="int8 on integer kernels, or k-bit quantization-aware training (QAT, LSQ, DoReFa, "
        "binary and ternary)",
        description="--method int8 (default): quantize a trained model to int8 (weights per "
        "channel, activations per tensor, ranges calibrated on --dataset), then report "
        "accuracy, size and latency of the int8 model against float32 on the same backend and "
        "against eager float32. --method qat|lsq|dorefa|fixed: fake-quantize weights and layer "
        "inputs to --bits, calibrate, report the accuracy right after (post-training "
        "quantization at that width), fine-tune --finetune-epochs with the straight-through "
        "estimator, and write a .sqz with the weights packed at --bits; 8-bit qat is then "
        "converted to --backend and timed as int8 is. Examples: squeezer quantize resnet20.pt "
        "--backend onnxruntime --out r20-int8.onnx; squeezer quantize resnet20.pt --method lsq "
        "--bits 4 --finetune-epochs 2",
    )
    model_argument(p)
    p.add_argument(
        "--method",
        choices=METHODS,
        default="int8",
        help="int8: post-training quantization with calibration (default); qat: uniform "
        "fake quantization (per-channel weights); lsq: learned step size; dorefa: DoReFa-Net; "
        "fixed: Gupta et al.'s fixed point with stochastic rounding; binaryconnect: +-H "
        "weights (--stochastic for stochastic binarization); binarynet: binary weights and "
        "inputs; xnor: XNOR-Net (binary weights scaled per filter, binary inputs with the K "
        "map); bwn: XNOR-Net's weights only; lab: loss-aware binarization; twn: ternary "
        "weight networks; ttq: trained ternary quantization; ternaryconnect: stochastic "
        "ternary weights with power-of-two inputs in the weight gradient (Lin 2016); sws: "
        "soft weight-sharing (a Gaussian-mixture prior learned while retraining "
        "--finetune-epochs, then the weights snapped to its --components means); kmeans: "
        "k-means weight sharing at --bits per weight (--weighting for Hessian-weighted); pq: "
        "product quantization, k-means of --subvector-long row pieces with 2^--bits words "
        "(--response for Q-CNN's output fitting); rq: residual quantization (two stages of "
        "pq); hashednets: weights drawn from --compression times fewer hashed buckets. "
        "Codebook methods fine-tune the codebooks --finetune-epochs (SGD, lr 0.001, "
        "no weight decay) and write a .sqz",
    )
    p.add_argument(
        "--bits",
        type=int,
        help="weight and activation bits: int8 8; qat and lsq 2-8; dorefa 1-8; fixed: the "
        "word length, 2-32 (default 8, fixed 16); binary methods 1 and ternary 2 (fixed)",
    )
    p.add_argument(
        "--stochastic",
        action="store_true",
        help="binaryconnect: stochastic binarization in training (deterministic at inference)",
    )
    p.add_argument(
        "--layer-bits",
        metavar="PATTERN=BITS[,...]",
        help="k-bit methods: bits per layer name or pattern (mixed precision), e.g. "
        "'layer3.*=2,fc=8'",
    )
    p.add_argument(
        "--first-last-bits",
        type=int,
        metavar="N",
        help="k-bit methods: bits of the first and last layers (default 8; fixed: as --bits); "
        "0: as --bits",
    )
    p.add_argument(
        "--fraction-bits", type=int, default=None, metavar="N",
        help="fixed: bits after the binary point (default: --bits minus 2)",
    )  # fmt: skip
    p.add_argument(
        "--rounding", choices=("stochastic", "nearest"), default="stochastic",
        help="fixed: how updates and activations are rounded (default stochastic)",
    )  # fmt: skip
    p.add_argument(
        "--finetune-epochs", type=int, default=0, metavar="N",
        help="k-bit methods: quantization-aware training epochs (default 0: post-training)",
    )  # fmt: skip
    p.add_argument(
        "--lr", type=positive_float,
        help="fine-tuning learning rate (default 0.01 with SGD; sws: 0.0005 with Adam)",
    )  # fmt: skip
    p.add_argument(
        "--components", type=positive, default=16,
        help="sws: non-zero mixture components, the most distinct values a layer keeps "
        "(default 16)",
    )  # fmt: skip
    p.add_argument(
        "--tau", type=positive_float, default=0.005,
        help="sws: weight of the prior against the cross-entropy (default 0.005)",
    )  # fmt: skip
    p.add_argument(
        "--layers", metavar="PATTERNS",
        help="codebook methods: only these layers (comma-separated names or patterns, e.g. "
        "'fc*'; default every Linear and Conv)",
    )  # fmt: skip
    p.add_argument(
        "--subvector", type=positive, metavar="N",
        help="pq, rq: weights per sub-vector (default 4)",
    )  # fmt: skip
    p.add_argument(
        "--shared-codebook", action="store_true",
        help="pq, rq: one codebook for the whole layer instead of one per column segment",
    )  # fmt: skip
    p.add_argument(
        "--response", action="store_true",
        help="pq, rq: fit codewords and assignments to each layer's outputs on calibration "
        "data, with error correction (Q-CNN, Wu 2016)",
    )  # fmt: skip
    p.add_argument(
        "--compression", type=positive_float, metavar="R",
        help="hashednets: virtual weights per stored bucket (default 8)",
    )  # fmt: skip
    p.add_argument(
        "--weighting", choices=("none", "fisher", "hessian"),
        help="kmeans: weigh each weight's error by a curvature estimate (Choi 2017; default "
        "none)",
    )  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    p.add_argument(
        "--backend",
        choices=("inductor", "onnxruntime"),
        default="inductor",
        help="what runs the int8 model: torch.compile with oneDNN int8 kernels (inductor, "
        "default) or ONNX Runtime's integer kernels (onnxruntime)",
    )
    p.add_argument(
        "--observer",
        choices=OBSERVERS,
        default="mse",
        help="how activation ranges are chosen: minmax, percentile (--percentile), mse "
        "(least squared error, default) or entropy (KL divergence, as TensorRT)",
    )
    p.add_argument(
        "--percentile", type=positive_float, default=99.99, help="for --observer percentile"
    )
    p.add_argument(
        "--calibration",
        type=positive,
        default=32,
        metavar="N",
        help="calibration batches of 64 training images (default 32)",
    )
    p.add_argument(
        "--dynamic",
        action="store_true",
        help="quantize Linear layers only, activations at run time (no calibration data)",
    )
    p.add_argument("--per-tensor", action="store_true", help="one weight scale per tensor")
    p.add_argument(
        "--full-range",
        action="store_true",
        help="onnxruntime: 8-bit weights instead of the default 7 (ONNX Runtime's x86 "
        "uint8 x int8 kernels can saturate at 8 bits and lose accuracy)",
    )
    p.add_argument("--exclude", metavar="PATTERNS", help="comma-separated layers left float32")
    p.add_argument(
        "--dataset", metavar="NAME", help="calibration and test data (default: the checkpoint's)"
    )
    p.add_argument("--batch-sizes", default="1,32", metavar="B[,B...]", help="batch sizes to time")
    p.add_argument(
        "--min-run-time", type=positive_float, default=0.5, metavar="SECONDS",
        help="seconds of timing per model and setting (default 0.5)",
    )  # fmt: skip
    p.add_argument("--no-latency", action="store_true", help="skip the timing")
    p.add_argument(
        "--out",
        metavar="FILE",
        help="int8: the int8 model, .onnx for onnxruntime, .pt2 for inductor (default "
        "NAME-int8.onnx or NAME-int8.pt2); k-bit methods: a .sqz (default NAME-METHODBITS.sqz) "
        "or, for 8-bit qat, the converted .onnx/.pt2",
    )
    device_option(p)
    distill_option(p)
    model_options(p)
    data_options(p)
    json_option(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.distill and args.method in ("int8", "sws"):
        raise UsageError(
            f"--distill is for the fine-tuning of k-bit and codebook methods, not --method "
            f"{args.method}"
        )
    if args.distill and not args.finetune_epochs:
        raise UsageError(
            "--distill fine-tunes with the original as teacher: give --finetune-epochs N"
        )
    if args.method == "sws":
        return run_sws(args)
    if args.method != "int8":
        return run_kbit(args)
    return run_int8(args)


def run_int8(args: argparse.Namespace) -> int:
    import torch

    import squeezer as sq
    from squeezer.data import canonical_name
    from squeezer.errors import ConfigError

    if args.bits is not None and args.bits != 8:
        raise UsageError(f"--bits {args.bits}: int8 quantization is 8 bits")
    suffix = ".onnx" if args.backend == "onnxruntime" else ".pt2"
    if args.out and Path(args.out).suffix != suffix:
        raise UsageError(f"--out: the {args.backend} int8 model is written as {suffix}")
    model, source = load_model(args.model, args)
    shape = source["input_shape"]
    if not shape:
        raise UsageError(f"{args.model}: input shape unknown; pass --input-shape C,H,W")
    try:
        config = sq.quantization.Int8(
            backend=args.backend, observer=args.observer, percentile=args.percentile,
            per_channel=not args.per_tensor, dynamic=args.dynamic, max_batches=args.calibration,
            reduce_range=False if args.full_range else None,
            exclude=tuple(s for s in (args.exclude or "").split(",") if s),
        )  # fmt: skip
    except ConfigError as err:
        raise UsageError(str(err)) from None
    dataset = source["meta"].get("dataset") or args.dataset
    if args.dataset:
        dataset = args.dataset
    train = test = None
    if dataset:
        dataset = canonical_name(dataset)
        train, test = dataset_splits(dataset, args.data_dir, augment=False, limit=args.limit)
        check_fits(model, test.input_shape, test.num_classes, dataset)
    elif not args.dynamic:
        raise UsageError("calibration needs data: pass --dataset NAME (or --dynamic)")
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(0))
    if source["source"] == "zoo":
        info(f"{args.model}: zoo model with random weights")
    info(
        f"quantizing to int8 for {args.backend}"
        + ("" if args.dynamic else f", calibrating on {args.calibration} batches of {dataset}")
    )
    q = sq.quantize(model, config, x, calibration=train)
    print(q.report)
    result: dict[str, Any] = {"model": args.model, **q.report.to_dict()}
    if test is not None:
        result["dataset"] = dataset
        result["top1_float"] = sq.evaluate(model, test)["top1"]
        result["top1_int8"] = sq.evaluate(q, test)["top1"]
        info(
            f"top-1 on {dataset}: float32 {result['top1_float']:.4f}, int8 "
            f"{result['top1_int8']:.4f} ({100 * (result['top1_int8'] - result['top1_float']):+.2f}"
            " points)"
        )
    if not args.no_latency:
        result["latency"] = time_int8(args, model, q, x)
    out = Path(args.out or f"{Path(args.model.split(':')[-1]).stem}-int8{suffix}")
    q.save(out)
    info(f"wrote {out}")
    write_json(args.json, {**result, "out": str(out)})
    return 0


def time_int8(args: argparse.Namespace, model: Any, q: Any, x: Any) -> list[dict[str, Any]]:
    """Time ``q`` against ``model`` eager and on the same backend; print and return rows."""
    import copy

    import torch

    from squeezer.analysis import time_models
    from squeezer.deploy import prepare

    same = "compile" if args.backend == "inductor" else "onnxruntime"
    one = x[:1]
    info(f"timing int8 against float32 on {same} and eager float32")
    eager = copy.deepcopy(model).eval()
    on_backend = prepare(copy.deepcopy(model).eval(), same, one, torch.get_num_threads())
    rows = []
    for b in parse_ints(args.batch_sizes, "--batch-sizes"):
        lat = time_models(
            [eager, on_backend.module, q], one, b, torch.get_num_threads(),
            min_run_time=args.min_run_time,
        )  # fmt: skip
        rows.append({
            "batch_size": b, "threads": torch.get_num_threads(),
            "eager_float32_ms": lat[0].median_ms, f"{same}_float32_ms": lat[1].median_ms,
            "int8_ms": lat[2].median_ms,
            "speedup_over_eager": lat[0].median_ms / lat[2].median_ms,
            "speedup_over_same_backend": lat[1].median_ms / lat[2].median_ms,
        })  # fmt: skip
    print(
        f"latency (ms, median, {torch.get_num_threads()} thread(s)): int8 on {args.backend} "
        f"against float32 on {same} and eager float32"
    )
    for r in rows:
        print(
            f"  batch {r['batch_size']:>4}: eager float32 {r['eager_float32_ms']:.2f}, "
            f"{same} float32 {r[f'{same}_float32_ms']:.2f}, int8 {r['int8_ms']:.2f}  "
            f"({r['speedup_over_eager']:.2f}x over eager, "
            f"{r['speedup_over_same_backend']:.2f}x over {same})"
        )
    return rows


def _layer_bits(text: str | None) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        pattern, sep, bits = item.partition("=")
        if not sep or not pattern.strip() or not bits.strip().isdigit():
            raise UsageError(f"--layer-bits: {item!r} is not PATTERN=BITS")
        out[pattern.strip()] = int(bits)
    return out


def _kbit_config(args: argparse.Namespace) -> tuple[Any, int]:
    """The config of a k-bit, binary or ternary method from the flags, and its bits."""
    import squeezer as sq
    from squeezer.errors import ConfigError

    method = args.method
    default_bits = 16 if method == "fixed" else NATIVE_BITS.get(method, 8)
    bits = args.bits if args.bits is not None else default_bits
    kwargs: dict[str, Any] = {"bits": bits, "max_batches": args.calibration}
    if method == "bwn":
        kwargs["quantize_inputs"] = False
    if args.stochastic:
        if method != "binaryconnect":
            raise UsageError("--stochastic is for --method binaryconnect")
        kwargs["stochastic"] = True
    kwargs["per_layer"] = _layer_bits(args.layer_bits)
    if args.first_last_bits is not None:
        kwargs["first_last_bits"] = args.first_last_bits or None
    if args.exclude:
        kwargs["exclude"] = tuple(s for s in args.exclude.split(",") if s)
    if method == "fixed":
        kwargs.update(
            fraction_bits=bits - 2 if args.fraction_bits is None else args.fraction_bits,
            rounding=args.rounding,
        )
    elif args.fraction_bits is not None:
        raise UsageError("--fraction-bits is for --method fixed")
    if method == "qat" and args.per_tensor:
        kwargs["per_channel"] = False
    try:
        return getattr(sq.quantization, KBIT[method])(**kwargs), bits
    except ConfigError as err:
        raise UsageError(str(err).replace("bits must", "--bits must")) from None


_CODEBOOK_ONLY = {
    "layers": "codebook methods", "subvector": "pq and rq", "shared_codebook": "pq and rq",
    "response": "pq and rq", "compression": "hashednets", "weighting": "kmeans",
}  # fmt: skip


def _no_codebook_options(args: argparse.Namespace, allowed: tuple[str, ...] = ()) -> None:
    for name, where in _CODEBOOK_ONLY.items():
        if name not in allowed and getattr(args, name, None) not in (None, False):
            raise UsageError(f"--{name.replace('_', '-')} is for --method {where}")


def _codebook_config(args: argparse.Namespace) -> tuple[Any, int, str]:
    """The config of a codebook method (k-means, PQ, RQ, HashedNets) from the flags, its
    bits (index bits per weight, or per sub-vector) and a label for file names."""
    import squeezer as sq
    from squeezer.errors import ConfigError

    method = args.method
    allowed = {
        "kmeans": ("layers", "weighting"),
        "pq": ("layers", "subvector", "shared_codebook", "response"),
        "rq": ("layers", "subvector", "shared_codebook", "response"),
        "hashednets": ("layers", "compression"),
    }[method]
    _no_codebook_options(args, allowed)
    for flag in ("stochastic", "layer_bits", "first_last_bits", "fraction_bits"):
        if getattr(args, flag, None) not in (None, False):
            raise UsageError(f"--{flag.replace('_', '-')} is not for --method {method}")
    kwargs: dict[str, Any] = {}
    if args.layers:
        kwargs["layers"] = tuple(s for s in args.layers.split(",") if s)
    if args.exclude:
        kwargs["exclude"] = tuple(s for s in args.exclude.split(",") if s)
    bits = args.bits if args.bits is not None else (4 if method == "kmeans" else 8)
    if method == "kmeans":
        kwargs.update(bits=bits, weighting=args.weighting or "none")
        kwargs["max_batches"] = args.calibration
        label = f"kmeans{bits}"
    elif method in ("pq", "rq"):
        kwargs.update(
            bits=bits, subvector=args.subvector or 4, response=args.response,
            shared_codebook=args.shared_codebook, max_batches=args.calibration,
        )  # fmt: skip
        label = f"{method}{kwargs['subvector']}x{bits}"
    else:
        if args.bits is not None:
            raise UsageError("--bits is not for --method hashednets; use --compression")
        kwargs["compression"] = args.compression or 8.0
        label = f"hashednets{kwargs['compression']:g}"
        bits = 0
    try:
        return getattr(sq.quantization, CODEBOOK[method])(**kwargs), bits, label
    except ConfigError as err:
        raise UsageError(str(err).replace("bits must", "--bits must")) from None


def run_kbit(args: argparse.Namespace) -> int:
    """Fake-quantize, calibrate, evaluate, fine-tune, evaluate, save packed (and, for 8-bit
    QAT, convert to the int8 backend and time it)."""
    import copy
    import os
    import tempfile

    import torch

    import squeezer as sq
    from squeezer.data import canonical_name

    method = args.method
    if method in CODEBOOK:
        config, bits, label = _codebook_config(args)
    else:
        _no_codebook_options(args)
        config, bits = _kbit_config(args)
        label = f"{method}{bits}"
    if args.finetune_epochs < 0:
        raise UsageError("--finetune-epochs must be >= 0")
    converts = method == "qat" and bits == 8
    out = Path(args.out or f"{Path(args.model.split(':')[-1]).stem}-{label}.sqz")
    allowed = (".sqz", ".onnx", ".pt2") if converts else (".sqz",)
    if out.suffix not in allowed:
        raise UsageError(f"--out: the {method} model is written as {' or '.join(allowed)}")
    if out.suffix in (".onnx", ".pt2"):
        want = ".onnx" if args.backend == "onnxruntime" else ".pt2"
        if out.suffix != want:
            raise UsageError(f"--out: the {args.backend} int8 model is written as {want}")
    model, source = load_model(args.model, args)
    shape = source["input_shape"]
    if not shape:
        raise UsageError(f"{args.model}: input shape unknown; pass --input-shape C,H,W")
    dataset = args.dataset or source["meta"].get("dataset")
    if not dataset:
        raise UsageError(f"--method {method} calibrates and evaluates on data: pass --dataset")
    dataset = canonical_name(dataset)
    train, test = dataset_splits(dataset, args.data_dir, limit=args.limit)
    check_fits(model, test.input_shape, test.num_classes, dataset)
    if source["source"] == "zoo":
        info(f"{args.model}: zoo model with random weights")
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(0))
    quantized = copy.deepcopy(model)
    calib = sq.data.loader(train.without_augment(), 64, shuffle=True, seed=0)
    name = KBIT.get(method) or CODEBOOK[method]
    info(f"{name} ({label}), calibrating on {args.calibration} batches of {dataset}")
    report = sq.quantize_(quantized, config, x, data=calib)
    print(report)
    result: dict[str, Any] = {"model": args.model, "dataset": dataset, **report.to_dict()}
    result["bits"] = bits
    result["top1_float"] = sq.evaluate(model, test)["top1"]
    result["top1_ptq"] = sq.evaluate(quantized, test)["top1"]
    steps = [
        f"float32 {result['top1_float']:.4f}",
        f"{label} right after {result['top1_ptq']:.4f}",
    ]
    if args.finetune_epochs:
        codebook = method in CODEBOOK  # the codebooks train, gently and without decay
        fit_on_device(
            args, quantized, train, val=test, epochs=args.finetune_epochs,
            lr=args.lr or (0.001 if codebook else 0.01), verbose=not args.quiet,
            teacher=model, **({"weight_decay": 0.0} if codebook else {}),
        )  # fmt: skip
        result["top1_qat"] = sq.evaluate(quantized, test)["top1"]
        steps.append(f"after {args.finetune_epochs} epoch(s) {result['top1_qat']:.4f}")
    info(f"top-1 on {dataset}: " + ", ".join(steps))
    with tempfile.TemporaryDirectory(prefix="squeezer-q-") as folder:
        ref = Path(folder) / "float.sqz"
        sq.save(model, ref)
        result["float_sqz_bytes"] = os.path.getsize(ref)
    meta = {"dataset": dataset, "method": method, "bits": bits}
    if out.suffix == ".sqz":
        sq.save(quantized, out, meta=meta)
        result["sqz_bytes"] = os.path.getsize(out)
        info(
            f"wrote {out}: {result['sqz_bytes']:,} bytes; the float32 model in .sqz: "
            f"{result['float_sqz_bytes']:,} bytes "
            f"({result['float_sqz_bytes'] / result['sqz_bytes']:.2f}x)"
        )
    if converts:
        info(f"converting the 8-bit QAT model to int8 on {args.backend}")
        int8_config = sq.quantization.Int8(
            backend=args.backend, observer="minmax", max_batches=args.calibration,
            reduce_range=False if args.full_range else None,
            per_channel=not args.per_tensor,
        )  # fmt: skip
        int8 = sq.quantize(quantized, int8_config, x, calibration=train)
        result["top1_int8"] = sq.evaluate(int8, test)["top1"]
        info(f"top-1 of the int8 {args.backend} model: {result['top1_int8']:.4f}")
        if not args.no_latency:
            result["latency"] = time_int8(args, model, int8, x)
        if out.suffix != ".sqz":
            int8.save(out)
            info(f"wrote {out}")
    write_json(args.json, {**result, "out": str(out)})
    return 0


def run_sws(args: argparse.Namespace) -> int:
    """Soft weight-sharing: put the prior on, retrain, snap, evaluate, save the .sqz."""
    import copy
    import os
    import tempfile

    import squeezer as sq
    from squeezer.data import canonical_name
    from squeezer.errors import ConfigError

    if args.finetune_epochs < 1:
        raise UsageError("--method sws retrains under its prior: give --finetune-epochs N >= 1")
    exclude = tuple(s for s in (args.exclude or "").split(",") if s)
    try:
        config = sq.quantization.SoftWeightSharing(
            components=args.components, tau=args.tau, exclude=exclude
        )
    except ConfigError as err:
        raise UsageError(str(err)) from None
    out = Path(args.out or f"{Path(args.model.split(':')[-1]).stem}-sws{args.components}.sqz")
    if out.suffix != ".sqz":
        raise UsageError("--out: the sws model is written as .sqz")
    model, source = load_model(args.model, args)
    dataset = args.dataset or source["meta"].get("dataset")
    if not dataset:
        raise UsageError("--method sws retrains on data: pass --dataset")
    dataset = canonical_name(dataset)
    train, test = dataset_splits(dataset, args.data_dir, limit=args.limit)
    check_fits(model, test.input_shape, test.num_classes, dataset)
    shared = copy.deepcopy(model)
    print(sq.quantize_(shared, config))
    result: dict[str, Any] = {"model": args.model, "dataset": dataset, "method": "sws"}
    result["top1_float"] = sq.evaluate(model, test)["top1"]
    fit_on_device(
        args, shared, train, val=test, epochs=args.finetune_epochs, lr=args.lr or 5e-4,
        optimizer="adam", weight_decay=0.0, schedule="constant", verbose=not args.quiet,
    )  # fmt: skip
    result["layers"] = sq.train.finish_(shared)
    result["top1_sws"] = sq.evaluate(shared, test)["top1"]
    for key, value in result["layers"].items():
        print(f"  {key}: {value['clusters']} values, {value['zero']:.1%} zero")
    top1 = f"float32 {result['top1_float']:.4f}, snapped {result['top1_sws']:.4f}"
    info(f"top-1 on {dataset}: {top1}")
    with tempfile.TemporaryDirectory(prefix="squeezer-q-") as folder:
        ref = Path(folder) / "float.sqz"
        sq.save(model, ref)
        result["float_sqz_bytes"] = os.path.getsize(ref)
    sq.save(shared, out, meta={"dataset": dataset, "method": "sws"})
    result["sqz_bytes"] = os.path.getsize(out)
    rate = result["float_sqz_bytes"] / result["sqz_bytes"]
    info(
        f"wrote {out}: {result['sqz_bytes']:,} bytes; the float32 model in .sqz: "
        f"{result['float_sqz_bytes']:,} bytes ({rate:.2f}x)"
    )
    write_json(args.json, {**result, "out": str(out)})
    return 0
