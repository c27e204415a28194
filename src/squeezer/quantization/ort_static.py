"""Static int8 quantization for ONNX Runtime: the float model exported to ONNX, activation
ranges chosen by squeezer's observers, and ONNX Runtime's own QDQ quantizer placing the
QuantizeLinear / DequantizeLinear pairs.

Why not export the PT2E graph that the Inductor backend uses: the x86 quantizer marks only
the inputs of convolutions and linear layers, so a convolution whose output goes to a
residual addition has no QuantizeLinear after it and ONNX Runtime runs it in float32, with
layout transposes around it (ResNet-50: 16 of 53 convolutions left float, no speedup over
float32 at all). ONNX Runtime's quantizer knows which of its operators have integer kernels
(QLinearConv, QLinearAdd, QGemm, pooling that passes int8 through) and quantizes every tensor
between them, so the whole network stays in int8.

The ranges are squeezer's: every float tensor ONNX Runtime would calibrate is added to the
graph's outputs, the calibration batches run through ONNX Runtime, each tensor feeds one
observer (min-max, percentile, MSE or entropy), and the chosen ``[lo, hi]`` reach the
quantizer as ``TensorQuantOverrides`` (``rmin`` / ``rmax``), its documented way to set them.
"""

from __future__ import annotations

import ast
import contextlib
import logging
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from squeezer.deploy.export import quiet, to_onnx
from squeezer.errors import ExportError
from squeezer.quantization.observers import observer_class

if TYPE_CHECKING:
    from squeezer.quantization.int8 import Int8

# ONNX operators whose weight input (index 1) becomes int8: the layers squeezer reports.
WEIGHTED = ("Conv", "Gemm", "MatMul")


@contextlib.contextmanager
def _ort_quiet() -> Iterator[None]:
    """ONNX Runtime's quantization tool logs through the root logger ("Please consider
    pre-processing", shape-inference notes); keep that out of the user's way too."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with quiet():
            yield
    finally:
        root.setLevel(level)


def module_of(node: Any) -> str | None:
    """The PyTorch module an exported ONNX node came from (the exporter's name scopes)."""
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            try:
                scopes = ast.literal_eval(prop.value)
            except (ValueError, SyntaxError):
                return None
            return str(scopes[-2]) if len(scopes) >= 2 else None
    return None


def _calibration_tensors(model: Any) -> list[str]:
    """Float tensors (not weights) read or written by any node: what ONNX Runtime's
    calibrator would observe, in graph order."""
    from onnx import TensorProto

    infos = {vi.name: vi for vi in model.graph.value_info}
    infos.update({vi.name: vi for vi in model.graph.output})
    infos.update({vi.name: vi for vi in model.graph.input})
    weights = {t.name for t in model.graph.initializer}
    floats = {TensorProto.FLOAT, TensorProto.FLOAT16}
    names: dict[str, None] = {}
    for node in model.graph.node:
        for name in (*node.input, *node.output):
            vi = infos.get(name)
            if (
                vi is not None
                and name not in weights
                and vi.type.HasField("tensor_type")
                and vi.type.tensor_type.elem_type in floats
            ):
                names[name] = None
    return list(names)


def _ranges(
    model: Any,
    batches: list[tuple[Tensor, ...]],
    config: Int8,
    threads: int,
    progress: bool | None,
) -> tuple[dict[str, tuple[float, float]], int]:
    """``{tensor: (lo, hi)}`` from ``config.observer`` over ``batches``, and the example count."""
    import onnx
    import onnxruntime as ort

    names = _calibration_tensors(model)
    augmented = onnx.ModelProto()
    augmented.CopyFrom(model)
    outputs = {o.name for o in augmented.graph.output}
    infos = {vi.name: vi for vi in augmented.graph.value_info}
    infos.update({vi.name: vi for vi in augmented.graph.input})
    for name in names:
        if name not in outputs:
            augmented.graph.output.append(infos[name])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(
        augmented.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    feeds = [i.name for i in session.get_inputs()]
    fetched = [o.name for o in session.get_outputs()]
    make = observer_class(config.observer, config.percentile)
    observers = {
        name: make(dtype=torch.uint8, quant_min=0, quant_max=255, qscheme=torch.per_tensor_affine)
        for name in names
    }
    n = 0
    no_bar = not sys.stderr.isatty() if progress is None else not progress
    for xs in tqdm(batches, desc="calibrate", disable=no_bar, leave=False):
        values = session.run(
            None, {k: x.detach().float().numpy() for k, x in zip(feeds, xs, strict=False)}
        )
        for name, value in zip(fetched, values, strict=True):
            if name in observers:
                observers[name](torch.from_numpy(np.asarray(value, dtype=np.float32)))
        n += int(xs[0].shape[0])
    ranges = {}
    for name, obs in observers.items():
        scale, zero_point = obs.calculate_qparams()
        s, z = float(scale.reshape(-1)[0]), int(zero_point.reshape(-1)[0])
        ranges[name] = ((0 - z) * s, (255 - z) * s)
    return ranges, n


class _Reader:
    """A calibration data reader of one batch: ONNX Runtime's calibrator must run, but every
    range it computes is overridden by squeezer's."""

    def __init__(self, feeds: list[str], xs: tuple[Tensor, ...]) -> None:
        self._items = [{k: x.detach().float().numpy() for k, x in zip(feeds, xs, strict=False)}]

    def get_next(self) -> dict | None:
        return self._items.pop() if self._items else None


def quantize_onnxruntime(
    float_model: nn.Module,
    inputs: tuple[Tensor, ...],
    batches: list[tuple[Tensor, ...]],
    config: Int8,
    exclude: list[str],
    progress: bool | None = None,
) -> tuple[bytes, list[str], int]:
    """Int8 QDQ ONNX of ``float_model``: (the file's bytes, the names of the modules whose
    weights are int8, the number of calibration examples). Modules named in ``exclude``
    keep float32 weights.

    Raises:
        ExportError: the model does not export to ONNX or ONNX Runtime cannot quantize it.
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    from squeezer.analysis.deploy import inference_copy

    with quiet():  # BatchNorm folded by name, so each Conv node keeps its module's scope
        folded = inference_copy(float_model)
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix="squeezer-ort-int8-") as folder:
        src, pre, dst = (Path(folder) / f for f in ("float.onnx", "pre.onnx", "int8.onnx"))
        to_onnx(folded, inputs, src)
        with _ort_quiet():
            try:
                from onnxruntime.quantization.shape_inference import quant_pre_process

                quant_pre_process(str(src), str(pre))
            except Exception:  # symbolic shape inference fails on some graphs; ONNX's will do
                onnx.save(onnx.shape_inference.infer_shapes(onnx.load(str(src))), str(pre))
        model = onnx.load(str(pre))
        feeds = [i.name for i in model.graph.input]
        ranges, n = _ranges(model, batches, config, threads, progress)
        overrides = {
            k: [{"rmin": np.float32(lo), "rmax": np.float32(hi)}] for k, (lo, hi) in ranges.items()
        }
        excluded = [
            node.name
            for node in model.graph.node
            if node.op_type in WEIGHTED and module_of(node) in set(exclude)
        ]
        try:
            with _ort_quiet():
                quantize_static(
                    str(pre), str(dst), _Reader(feeds, batches[0]),
                    quant_format=QuantFormat.QDQ, per_channel=config.per_channel,
                    reduce_range=config.reduce_range is not False,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=excluded,
                    extra_options={"TensorQuantOverrides": overrides},
                )  # fmt: skip
        except Exception as exc:  # the quantization tool raises several types
            raise ExportError(f"int8: ONNX Runtime cannot quantize this model: {exc}") from None
        data = dst.read_bytes()
    return data, sorted(_int8_modules(onnx.load_from_string(data))), n


def _int8_modules(model: Any) -> set[str]:
    """Modules whose Conv / Gemm / MatMul reads its weight through a DequantizeLinear of an
    int8 initializer."""
    weights = {t.name for t in model.graph.initializer}
    dequantized = {
        node.output[0]
        for node in model.graph.node
        if node.op_type == "DequantizeLinear" and node.input[0] in weights
    }
    names = set()
    for node in model.graph.node:
        if node.op_type in WEIGHTED and len(node.input) > 1 and node.input[1] in dequantized:
            names.add(module_of(node) or node.name)
    return names
