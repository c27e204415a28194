"""Post-training int8 quantization that runs on integer kernels (method S6).

Weights are quantized per output channel (symmetric int8), activations per tensor (affine
uint8) with ranges from calibration batches and one of four observers (see
:mod:`squeezer.quantization.observers`). BatchNorm is folded into the convolutions first.

Each backend is quantized by the tool that knows its integer kernels:

- ``"inductor"``: PyTorch 2's export-based flow, as torchao ships it. The model is traced
  with ``torch.export``, annotated by the x86 quantizer (``X86InductorQuantizer``), observed
  on the calibration batches and converted to a graph of quantize / dequantize pairs, which
  ``torch.compile`` with weight freezing fuses into oneDNN int8 convolutions (VNNI on this
  kind of CPU).
- ``"onnxruntime"``: the float model exported to ONNX and quantized by ONNX Runtime's own QDQ
  quantizer, with the activation ranges chosen by squeezer's observer (see
  :mod:`squeezer.quantization.ort_static`); ONNX Runtime fuses the pairs into
  ``QLinearConv``, ``QLinearAdd`` and ``QGemm``. Weights are 7-bit there by default
  (``reduce_range``).

Both calibrate with the same four observers on the same batches.

``dynamic=True`` quantizes only Linear layers, with activation ranges computed at run time
(no calibration): the usual choice for MLPs and transformers. On ONNX Runtime it is ONNX
Runtime's own ``quantize_dynamic`` of the exported float model.

Because the whole graph is rewritten, :func:`squeezer.quantize` returns a new model
(:class:`QuantizedModel`) and leaves the original untouched::

    q = sq.quantize(model, sq.quantization.Int8(backend="inductor"), x, calibration=batches)
    sq.evaluate(q, test); sq.measure(q, x, baseline=model, backend="compile")
"""

from __future__ import annotations

import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from squeezer.config import check
from squeezer.core import LayerSelection, Report, register_handler
from squeezer.core.inputs import as_tuple, batch_of
from squeezer.core.modules import baked_copy
from squeezer.deploy.export import quiet
from squeezer.errors import BackendError, ConfigError, ExportError, ModelError
from squeezer.quantization.observers import OBSERVERS, observer_class

BACKENDS = ("inductor", "onnxruntime")
TIMING_BACKEND = {"inductor": "compile", "onnxruntime": "onnxruntime"}


@dataclass(frozen=True)
class Int8(LayerSelection):
    """Post-training int8 quantization.

    Attributes:
        backend: ``"inductor"`` (``torch.compile`` with oneDNN int8 kernels) or
            ``"onnxruntime"`` (QDQ ONNX in ONNX Runtime).
        observer: how activation ranges are chosen from the calibration batches:
            ``"minmax"``, ``"percentile"``, ``"mse"`` (default) or ``"entropy"`` (KL).
        percentile: for ``observer="percentile"``, the upper percentile kept (the lower is
            ``100 - percentile``).
        per_channel: weights with one scale per output channel (default) or one per tensor.
        dynamic: quantize Linear layers only, activations at run time; needs no calibration.
        max_batches: calibration batches used at most.
        reduce_range: weights at 7 bits (-64..63) instead of 8. ``None`` (default) means on
            for ``"onnxruntime"``, off for ``"inductor"``. ONNX Runtime's x86 uint8 x int8
            kernels add pairs of products into 16 bits (``VPMADDUBSW``), which saturates on
            large weights: VGG-11 on Fashion-MNIST lost 0.58 points at full 8 bits and 0.05
            at 7 bits, at the same speed (ONNX Runtime's own advice). oneDNN, which Inductor
            uses, accumulates in 32 bits, so the option is not offered there.
        layers, exclude, layer_types: which layers are quantized (see
            :class:`squeezer.core.LayerSelection`); excluded layers stay float32.
    """

    backend: str = "inductor"
    observer: str = "mse"
    percentile: float = 99.99
    per_channel: bool = True
    dynamic: bool = False
    max_batches: int = 32
    reduce_range: bool | None = None

    def validate(self) -> None:
        super().validate()
        check(
            not (self.reduce_range and self.backend == "inductor"),
            "Int8: reduce_range applies to backend='onnxruntime' only",
        )
        check(self.backend in BACKENDS, f"Int8: backend must be one of {', '.join(BACKENDS)}")
        check(self.observer in OBSERVERS, f"Int8: observer must be one of {', '.join(OBSERVERS)}")
        check(50 < self.percentile <= 100, "Int8: percentile must be in (50, 100]")
        check(self.max_batches >= 1, "Int8: max_batches must be >= 1")


@dataclass
class Int8Report(Report):
    """What the quantization did: layers, calibration, time, size and output difference."""

    backend: str
    observer: str
    dynamic: bool
    quantized_layers: list[str]
    float_layers: list[str]
    calibration_examples: int
    seconds: float
    float_bytes: int
    int8_bytes: int
    max_abs_diff: float
    warnings: list[str] = field(default_factory=list)
    weight_bits: int = 8

    def to_dict(self) -> dict[str, Any]:
        return {"method": "int8", **self.__dict__}

    def format(self) -> str:
        kind = "dynamic int8 (Linear layers)" if self.dynamic else "static int8"
        lines = [
            f"{kind} on {self.backend}"
            + ("" if self.weight_bits == 8 else f" ({self.weight_bits}-bit weights)")
            + ("" if self.dynamic else f", activation ranges by {self.observer}"),
            f"  quantized layers: {len(self.quantized_layers)}"
            + (f"; left float32: {', '.join(self.float_layers)}" if self.float_layers else ""),
            f"  calibration examples: {self.calibration_examples:,}",
            f"  weights: {self.float_bytes:,} -> {self.int8_bytes:,} bytes "
            f"({self.float_bytes / max(self.int8_bytes, 1):.2f}x)",
            f"  max |int8 - float32| on the example: {self.max_abs_diff:.3g}",
            f"  took {self.seconds:.1f} s",
        ]
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)


class QuantizedModel(nn.Module):
    """An int8 model ready to run: call it, ``sq.evaluate`` it, ``sq.measure`` it, ``save`` it.

    Inference only (its forward runs without autograd). ``float_model`` is the float32 model it
    was made from (BatchNorm not yet folded), used for counting parameters and FLOPs.
    """

    def __init__(
        self,
        runner: Any,
        backend: str,
        float_model: nn.Module,
        report: Int8Report,
        onnx_bytes: bytes | None = None,
        program: Any = None,
    ) -> None:
        super().__init__()
        object.__setattr__(self, "runner", runner)  # not a child: no train()/eval() recursion
        object.__setattr__(self, "float_model", float_model)
        self.backend = backend
        self.runtime = TIMING_BACKEND[backend]
        self.report = report
        self._onnx_bytes = onnx_bytes
        self._program = program
        self.training = False

    def train(self, mode: bool = True) -> QuantizedModel:
        if mode:
            raise ModelError("an int8 QuantizedModel runs inference only; train the float model")
        self.training = False
        return self

    def forward(self, *inputs: Tensor) -> Tensor:
        with torch.no_grad():
            return self.runner(*inputs)

    def stored_bytes(self) -> int:
        """Bytes of the weights as stored: int8 values, their scales, float32 for the rest."""
        return self.report.int8_bytes

    def save(self, path: str | Path) -> Path:
        """Write the model: ONNX (``.onnx``) for ONNX Runtime, an exported program (``.pt2``,
        ``torch.export.save``) for Inductor; read it back with :func:`load_int8`."""
        path = Path(path)
        if self.backend == "onnxruntime":
            assert self._onnx_bytes is not None
            path.write_bytes(self._onnx_bytes)
        else:
            torch.export.save(self._program, str(path))
        return path

    def extra_repr(self) -> str:
        return f"backend={self.backend}, layers={len(self.report.quantized_layers)}"


def require_torchao() -> Any:
    """torchao's PT2E quantization, or a :class:`BackendError` saying how to install it."""
    try:
        with quiet():
            from torchao.quantization.pt2e import quantize_pt2e
    except ImportError as exc:
        raise BackendError(
            f"int8 quantization needs torchao ({exc}): pip install --no-deps torchao"
        ) from None
    return quantize_pt2e


def calibration_batches(data: Any, limit: int) -> list[tuple[Tensor, ...]]:
    """Up to ``limit`` batches of model inputs from a dataset, a loader, or batches of
    ``(inputs, labels)`` pairs or bare inputs."""
    from squeezer.data import ImageDataset, loader

    if isinstance(data, ImageDataset):
        data = loader(data.without_augment(), 64, shuffle=True, seed=0)
    elif isinstance(data, torch.utils.data.Dataset):
        data = torch.utils.data.DataLoader(data, batch_size=64)
    if isinstance(data, Tensor):
        data = [data]
    out = []
    for batch in data:
        if isinstance(batch, (tuple, list)) and len(batch) == 2 and isinstance(batch[1], Tensor):
            batch = batch[0]  # (inputs, labels)
        out.append(as_tuple(batch))
        if len(out) >= limit:
            break
    return out


def _split_repeated_calls(gm: torch.fx.GraphModule) -> None:
    """Give each call of a module that runs more than once (``self.relu`` after the first
    conv and again after the residual add, as ResNets do) its own name in the trace, so the
    quantizer's pattern matcher sees separate calls rather than one partition with two
    outputs (which it refuses)."""
    for node in gm.graph.nodes:
        stack = node.meta.get("nn_module_stack")
        if not stack:
            continue
        key, (fqn, cls) = next(reversed(stack.items()))
        if "@" in key:
            stack[key] = (f"{fqn}@{key.rsplit('@', 1)[1]}", cls)


def _program(model: nn.Module, inputs: tuple[Tensor, ...]) -> Any:
    """``torch.export`` of ``model`` with a dynamic batch dimension where it allows one."""
    two = batch_of(inputs, 2)  # a batch of one would be specialized to 1
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    try:
        return torch.export.export(model, two, dynamic_shapes=tuple({0: batch} for _ in two))
    except Exception:  # some models fix the batch size in their forward
        return torch.export.export(model, inputs)


def _export(model: nn.Module, inputs: tuple[Tensor, ...]) -> torch.fx.GraphModule:
    try:
        with quiet():
            program = _program(model, inputs)
    except Exception as exc:  # torch.export raises many types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(
            f"int8: torch.export cannot trace {type(model).__name__}: {first[:300]}"
        ) from None
    gm = program.module()
    _split_repeated_calls(gm)
    return gm


def _quantizer(config: Int8, model: nn.Module) -> tuple[Any, list[str], list[str]]:
    with quiet():
        import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
        from torchao.quantization.pt2e.observer import MinMaxObserver
        from torchao.quantization.pt2e.quantizer import QuantizationSpec

    qconfig = xiq.get_default_x86_inductor_quantization_config(is_dynamic=config.dynamic)
    if not config.dynamic:
        act = qconfig.input_activation
        act = QuantizationSpec(
            dtype=act.dtype, quant_min=act.quant_min, quant_max=act.quant_max,
            qscheme=act.qscheme, is_dynamic=False,
            observer_or_fake_quant_ctr=observer_class(config.observer, config.percentile),
        )  # fmt: skip
        weight = qconfig.weight
        if not config.per_channel:
            weight = QuantizationSpec(
                dtype=torch.int8, quant_min=-128, quant_max=127,
                qscheme=torch.per_tensor_symmetric, is_dynamic=False,
                observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=2**-12),
            )  # fmt: skip
        qconfig = type(qconfig)(act, act, weight, qconfig.bias, qconfig.is_qat)
    quantizer = xiq.X86InductorQuantizer()
    handled = (nn.Linear,) if config.dynamic else (nn.Conv2d, nn.Linear)
    chosen, left = [], []
    for name, module in model.named_modules():
        if not name or not isinstance(module, handled):
            continue
        if config.selects(name, module):
            chosen.append(name)
        else:
            left.append(name)
    if not chosen:
        kinds = "Linear" if config.dynamic else "Conv2d or Linear"
        raise ModelError(f"int8: no {kinds} layer selected")
    if left:  # quantize the chosen layers by name, leave the rest float32
        for name in chosen:
            quantizer.set_module_name_qconfig(name, qconfig)
    else:
        quantizer.set_global(qconfig)
    return quantizer, chosen, left


def _weight_bytes(model: nn.Module, quantized: list[str], per_channel: bool) -> tuple[int, int]:
    """Float32 bytes of every parameter, and the bytes with the quantized layers' weights as
    int8 plus one float32 scale per channel (or tensor)."""
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    saved = 0
    for name in quantized:
        w = model.get_submodule(name).weight
        scales = w.shape[0] if per_channel else 1
        saved += w.numel() * (w.element_size() - 1) - 4 * scales
    return total, total - saved


@register_handler("quantize-copy", Int8)
def quantize_int8(
    model: nn.Module,
    config: Int8,
    example_inputs: Tensor | tuple[Tensor, ...] | None = None,
    *,
    calibration: Any = None,
    progress: bool | None = None,
) -> QuantizedModel:
    """An int8 copy of ``model`` (see the module documentation); ``model`` is untouched."""
    if example_inputs is None:
        raise ConfigError("int8: example inputs are needed to trace the model")
    require_torchao()
    if config.backend == "onnxruntime":
        from squeezer.deploy.export import require_onnxruntime

        require_onnxruntime()
    inputs = as_tuple(example_inputs)
    batches = [] if calibration is None else calibration_batches(calibration, config.max_batches)
    if not config.dynamic and not batches:
        raise ConfigError(
            "int8: static quantization needs calibration batches (calibration=...); "
            "or use Int8(dynamic=True) for Linear layers"
        )
    t0 = time.perf_counter()
    was = model.training
    model.eval()
    try:
        from squeezer.deploy.export import export_form
        from squeezer.quantization.qat import dequantize_

        float_model = export_form(dequantize_(baked_copy(model))).eval()
    finally:
        model.train(was)
    if config.backend == "inductor":
        _ceil_pools_as_padding_(float_model)
    quantizer, chosen, left = _quantizer(config, float_model)
    with torch.no_grad():
        reference = float_model(*inputs)
    notes = []
    if config.dynamic and config.backend == "onnxruntime":
        dyn = _DynamicOrt(float_model, inputs, config.reduce_range is not False)
        runner, onnx_bytes, program, n = dyn, dyn.onnx_bytes, None, 0
        if left:
            notes.append("ONNX Runtime's dynamic quantization takes every MatMul/Gemm; the "
                         "layer selection was not applied")  # fmt: skip
    else:
        if config.backend == "onnxruntime":
            from squeezer.quantization.ort_static import quantize_onnxruntime

            onnx_bytes, quantized, n = quantize_onnxruntime(
                float_model, inputs, batches, config, left, progress
            )
            done = set(quantized)
        else:
            converted, n = _calibrate(float_model, inputs, quantizer, batches, config, progress)
            done = _quantized_names(converted)
        missed = [name for name in chosen if name not in done]
        who = "ONNX Runtime quantizer" if config.backend == "onnxruntime" else "x86 quantizer"
        if missed:
            notes.append(f"the {who} left {len(missed)} selected layer(s) float32: "
                         + ", ".join(missed[:8]) + (" ..." if len(missed) > 8 else ""))  # fmt: skip
        chosen, left = [c for c in chosen if c in done], left + missed
        if not chosen:
            raise ModelError(f"int8: the {who} quantized no layer of this model")
        if config.backend == "onnxruntime":
            runner, program = _ort_runner(onnx_bytes), None
        else:
            runner, program = _to_inductor(converted, inputs)
            onnx_bytes = None
    with torch.no_grad():
        out = runner(*inputs)
    diff = float((out - reference).abs().max()) if isinstance(out, Tensor) else float("nan")
    seven_bit = config.backend == "onnxruntime" and config.reduce_range is not False
    float_bytes, int8_bytes = _weight_bytes(float_model, chosen, config.per_channel)
    report = Int8Report(
        backend=config.backend, observer=config.observer, dynamic=config.dynamic,
        quantized_layers=chosen, float_layers=left, calibration_examples=n,
        seconds=time.perf_counter() - t0, float_bytes=float_bytes, int8_bytes=int8_bytes,
        max_abs_diff=diff, warnings=notes,
        weight_bits=7 if seven_bit else 8,
    )  # fmt: skip
    return QuantizedModel(runner, config.backend, float_model, report, onnx_bytes, program)


def _calibrate(
    float_model: nn.Module,
    inputs: tuple[Tensor, ...],
    quantizer: Any,
    batches: list[tuple[Tensor, ...]],
    config: Int8,
    progress: bool | None,
) -> tuple[torch.fx.GraphModule, int]:
    quantize_pt2e = require_torchao()
    gm = _export(float_model, inputs)
    try:
        with quiet():
            prepared = quantize_pt2e.prepare_pt2e(gm, quantizer)
    except Exception as exc:  # the quantizer's pattern matching raises several types
        raise ExportError(f"int8: the x86 quantizer cannot annotate this model: {exc}") from None
    n = 0
    no_bar = not sys.stderr.isatty() if progress is None else not progress
    with torch.no_grad():
        for xs in tqdm(batches or [inputs], desc="calibrate", disable=no_bar, leave=False):
            prepared(*xs)
            n += int(xs[0].shape[0]) if batches else 0
    with quiet():
        converted = quantize_pt2e.convert_pt2e(prepared)
    return converted, n


class _PaddedMaxPool(nn.Module):
    """``MaxPool2d(ceil_mode=True)`` as -inf padding on the right and bottom, then a floor-mode
    pool: the same output. Inductor's int8 max pool ignores ``ceil_mode`` (a 1x1 map pooled
    2x2 comes out 0x0), so the quantized graph must not contain it."""

    def __init__(self, pool: nn.MaxPool2d) -> None:
        super().__init__()
        self.pool = pool

    def forward(self, x: Tensor) -> Tensor:
        p = self.pool
        k, s, pad, d = (_pair(v) for v in (p.kernel_size, p.stride or p.kernel_size,
                                           p.padding, p.dilation))  # fmt: skip
        extra = []
        for i, n in enumerate(x.shape[-2:]):
            span = d[i] * (k[i] - 1) + 1
            out = -(-(n + 2 * pad[i] - span) // s[i]) + 1  # ceil mode's output size
            if (out - 1) * s[i] >= n + pad[i]:
                out -= 1
            extra.append(max(0, (out - 1) * s[i] + span - (n + 2 * pad[i])))
        x = torch.nn.functional.pad(x, (0, extra[1], 0, extra[0]), value=float("-inf"))
        return torch.nn.functional.max_pool2d(x, k, s, pad, d, ceil_mode=False)


def _pair(v: Any) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _ceil_pools_as_padding_(model: nn.Module) -> None:
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.MaxPool2d) and module.ceil_mode and name:
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, _PaddedMaxPool(module))


def _quantized_names(converted: torch.fx.GraphModule) -> set[str]:
    """Names of the modules whose convolution or matrix product reads an int8 weight in the
    converted graph (what the quantizer actually quantized)."""
    ops = {torch.ops.aten.conv2d.default, torch.ops.aten.linear.default}
    names = set()
    for node in converted.graph.nodes:
        if node.op != "call_function" or node.target not in ops or len(node.args) < 2:
            continue
        weight = node.args[1]
        if not (isinstance(weight, torch.fx.Node) and "dequantize" in str(weight.target)):
            continue
        stack = node.meta.get("nn_module_stack") or {}
        if stack:
            fqn = next(reversed(stack.values()))[0]
            names.add(fqn.split("@")[0])
    return names


def _to_inductor(converted: torch.fx.GraphModule, inputs: tuple[Tensor, ...]) -> tuple[Any, Any]:
    _drop_unused_tensors_(converted)
    with quiet():
        program = _program(converted, inputs)
        runner = _Frozen(converted)
        runner(*batch_of(inputs, 1))  # compile now, not at the user's first call
    return runner, program


def _ort_runner(data: bytes) -> Any:
    from squeezer.deploy.backends import OnnxRuntimeModule

    with tempfile.TemporaryDirectory(prefix="squeezer-int8-") as folder:
        path = Path(folder) / "int8.onnx"
        path.write_bytes(data)
        return OnnxRuntimeModule(path, torch.get_num_threads())


def _drop_unused_tensors_(gm: torch.fx.GraphModule) -> None:
    """Delete the parameters and buffers the converted graph no longer reads: conversion
    folds each float weight into an int8 constant but leaves the float tensor registered,
    and ``torch.export`` would then store both in the ``.pt2`` file."""
    used = {str(n.target) for n in gm.graph.nodes if n.op == "get_attr"}
    for name, _ in [*gm.named_parameters(), *gm.named_buffers()]:
        if name in used or any(u.startswith(name + ".") for u in used):
            continue
        owner_name, _, attr = name.rpartition(".")
        owner = gm.get_submodule(owner_name) if owner_name else gm
        owner._parameters.pop(attr, None)
        owner._buffers.pop(attr, None)
    gm.delete_all_unused_submodules()


class _DynamicOrt:
    """ONNX Runtime's dynamic int8 quantization of the exported float model."""

    def __init__(
        self, float_model: nn.Module, inputs: tuple[Tensor, ...], reduce_range: bool
    ) -> None:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        from squeezer.deploy.backends import OnnxRuntimeModule
        from squeezer.deploy.export import to_onnx

        with tempfile.TemporaryDirectory(prefix="squeezer-int8-") as folder:
            src, dst = Path(folder) / "float.onnx", Path(folder) / "int8.onnx"
            with quiet():
                to_onnx(float_model, inputs, src)
                quantize_dynamic(
                    str(src), str(dst), weight_type=QuantType.QInt8,
                    op_types_to_quantize=["MatMul", "Gemm"], reduce_range=reduce_range,
                )  # fmt: skip
            self.onnx_bytes = dst.read_bytes()
            self.module = OnnxRuntimeModule(dst, torch.get_num_threads())

    def __call__(self, *inputs: Tensor) -> Tensor:
        return self.module(*inputs)


def load_int8(path: str | Path, threads: int | None = None) -> nn.Module:
    """A model saved by :meth:`QuantizedModel.save`, ready to run: an ``.onnx`` file in an
    ONNX Runtime session, a ``.pt2`` exported program compiled by Inductor.

    Raises:
        ExportError: the file is neither.
    """
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"{path}: no such file")
    if path.suffix == ".onnx":
        from squeezer.deploy.backends import OnnxRuntimeModule

        return OnnxRuntimeModule(path, threads)
    try:
        with quiet():
            program = torch.export.load(str(path))
    except Exception as exc:  # torch.export.load raises several types
        raise ExportError(f"{path}: not an int8 model squeezer saved ({exc})") from None
    return _Loaded(_Frozen(program.module()))


class _Frozen:
    """``torch.compile`` of a converted int8 graph, run with Inductor's weight freezing, which
    prepacks the int8 weights and fuses each dequantize-conv-quantize into a oneDNN int8
    convolution. Freezing is switched on around each call (compilation happens inside the
    first call for each input shape), never globally. Each batch size gets its own static
    compilation: with a symbolic batch, Inductor's int8 convolution checks its output
    against the wrong (contiguous) strides and fails."""

    def __init__(self, graph: nn.Module) -> None:
        self.compiled = torch.compile(graph, dynamic=False)

    def __call__(self, *inputs: Tensor) -> Tensor:
        import torch._inductor.config as inductor_config

        with inductor_config.patch(freezing=True), torch.no_grad(), warnings.catch_warnings():
            # Inductor's int8 lowering copies a tensor with torch.tensor() at each new shape
            warnings.filterwarnings("ignore", "To copy construct", UserWarning)
            return self.compiled(*inputs)


class _Loaded(nn.Module):
    """A loaded int8 model: runs inference only."""

    def __init__(self, fn: Any) -> None:
        super().__init__()
        object.__setattr__(self, "fn", fn)

    def train(self, mode: bool = True) -> _Loaded:
        self.training = mode
        return self

    def forward(self, *inputs: Tensor) -> Tensor:
        return self.fn(*inputs)


@register_handler("quantize", Int8)
def _in_place(model: nn.Module, config: Int8, *_: Any, **__: Any) -> Report:
    raise ConfigError(
        "Int8 rewrites the whole graph and returns a new model: use "
        "q = sq.quantize(model, Int8(...), example_inputs, calibration=batches)"
    )
