"""``measure``: size, FLOPs and latency of a model, alone or against a baseline.

The survey metrics (Cheng et al., "A Survey of Model Compression and Acceleration for Deep
Neural Networks"): with a the parameters of the original model M and a* those of the compressed
M*, the compression rate is alpha = a / a*, the index space saving is beta = (a - a*) / a*;
with s and s* their running times, the speedup is delta = s / s*. Here a* counts the non-zero
parameters (a pruned weight is not stored), and latency is measured, never inferred from FLOPs.
"""

from __future__ import annotations

import json
import platform
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize
from tqdm.auto import tqdm

from squeezer.analysis.counting import (
    LayerCounts,
    count_flops,
    count_nonzero,
    count_params,
    layer_counts,
    size_bytes,
)
from squeezer.analysis.deploy import inference_copy
from squeezer.analysis.latency import Latency, layer_latency, time_models
from squeezer.core import baked_copy
from squeezer.core.inputs import Inputs, batch_of
from squeezer.deploy.backends import check_backend, prepare
from squeezer.errors import ConfigError

# A FLOPs cut at least this large should show up in the clock; if not, say so.
FLOPS_GAIN_WORTH_WARNING = 1.1
SPEEDUP_NOTICED = 1.05


def backend_name(backend: str = "eager") -> str:
    """The backend latency is measured on, in words."""
    cpu = platform.processor() or platform.machine()
    if backend == "onnxruntime":
        try:
            import onnxruntime

            return f"ONNX Runtime {onnxruntime.__version__} (CPU provider), CPU ({cpu})"
        except ImportError:
            return f"ONNX Runtime (not installed), CPU ({cpu})"
    what = "torch.compile (Inductor)" if backend == "compile" else "eager"
    return f"PyTorch {torch.__version__} {what}, CPU ({cpu})"


@dataclass
class Comparison:
    """The candidate against its baseline: the survey's alpha, beta, delta and FLOPs."""

    compression_rate: float  # alpha on parameters: baseline params / candidate non-zeros
    index_space_saving: float  # beta = (a - a*) / a*
    compression_rate_bytes: float  # stored bytes, baseline / candidate
    flops_reduction: float  # baseline FLOPs / candidate FLOPs
    speedup: list[dict[str, float]] = field(default_factory=list)  # delta per setting

    def to_dict(self) -> dict[str, Any]:
        return {
            "compression_rate": self.compression_rate,
            "index_space_saving": self.index_space_saving,
            "compression_rate_bytes": self.compression_rate_bytes,
            "flops_reduction": self.flops_reduction,
            "speedup": self.speedup,
        }


@dataclass
class Measurement:
    """What :func:`measure` found; ``str()`` is a table, :meth:`to_dict` is JSON-ready."""

    model: str
    input_shape: list[int]
    params: int
    nonzero_params: int
    flops: int  # per example (batch 1)
    size_bytes: int
    layers: list[LayerCounts]
    latency: list[Latency]
    backend: str
    baseline: Measurement | None = None
    comparison: Comparison | None = None
    warnings: list[str] = field(default_factory=list)
    prepare_seconds: list[float] = field(default_factory=list)  # compile/export, per model

    @property
    def latency_ms(self) -> float | None:
        """Median latency at the first measured setting (batch size, threads)."""
        return self.latency[0].median_ms if self.latency else None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "model": self.model,
            "input_shape": self.input_shape,
            "params": self.params,
            "nonzero_params": self.nonzero_params,
            "flops": self.flops,
            "size_bytes": self.size_bytes,
            "latency_ms": self.latency_ms,
            "latency": [lat.to_dict() for lat in self.latency],
            "backend": self.backend,
            "prepare_seconds": list(self.prepare_seconds),
            "layers": [vars(row) for row in self.layers],
            "warnings": list(self.warnings),
        }
        if self.baseline is not None and self.comparison is not None:
            base = self.baseline.to_dict()
            base.pop("layers")
            out["baseline"] = base
            out.update(self.comparison.to_dict())
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def __str__(self) -> str:
        return format_measurement(self)


def measure(
    model: nn.Module,
    example_inputs: Inputs,
    *,
    baseline: nn.Module | None = None,
    batch_sizes: Sequence[int] = (1,),
    threads: Sequence[int] | None = None,
    latency: bool = True,
    per_layer_latency: bool = True,
    min_run_time: float = 0.5,
    layout: str = "eager",
    backend: str = "eager",
    progress: bool | None = None,
) -> Measurement:
    """Measure a model: parameters, non-zeros, FLOPs, bytes and latency, per layer and total.

    Args:
        model: the model to measure (in eval mode for timing; its mode is restored).
        example_inputs: one or more example inputs; FLOPs are counted for the first example,
            and latency repeats it to each batch size.
        baseline: the original model; adds the survey's compression rate, index space saving
            and speedup, timing both models alternately in the same run.
        batch_sizes: batch sizes to time.
        threads: intra-op thread counts to time (default: the current setting).
        latency: time the model at all (False: counts only).
        per_layer_latency: also time each layer with hooks at the first setting.
        min_run_time: seconds of timing per model and setting, at least.
        layout: ``"eager"`` (the models as given) or ``"deploy"``: both models timed after
            :func:`~squeezer.analysis.inference_copy` (BatchNorm folded into convolutions,
            channels-last), the usual CPU deployment steps. Counts and per-layer latency are
            always of the models as given.
        backend: what runs the timed models: ``"eager"`` PyTorch, ``"compile"``
            (``torch.compile``) or ``"onnxruntime"`` (exported to ONNX). Both models run on
            it, alternately; compile or export seconds are reported apart
            (``prepare_seconds``), never inside the latency.
        progress: a progress bar over preparing and timing (default: when standard error is
            a terminal); compiling or exporting a large model takes tens of seconds.

    Returns:
        A :class:`Measurement`.

    Raises:
        ValueError: an unknown ``layout``.
    """
    if layout not in ("eager", "deploy"):
        raise ConfigError(f"layout must be 'eager' or 'deploy', got {layout!r}")
    check_backend(backend)
    threads = list(threads) if threads else [torch.get_num_threads()]
    model, baseline = plain(model), None if baseline is None else plain(baseline)
    runs_on = getattr(model, "runtime", None)  # a quantized model runs on its own backend
    counted = getattr(model, "float_model", model)  # ... and counts as its float original
    one = batch_of(example_inputs, 1)
    flops, module_flops = count_flops(counted, one)
    rows = layer_counts(counted, module_flops)
    base_m: Measurement | None = None
    timings: list[Latency] = []
    base_timings: list[Latency] = []
    prepare_seconds: list[float] = []
    batch_sizes = list(batch_sizes)
    if latency:
        timed = [model] if baseline is None else [baseline, model]
        fmt = torch.contiguous_format
        if layout == "deploy":
            timed = [inference_copy(m, channels_last=True) for m in timed]
            fmt = torch.channels_last
        prepared = {}
        keys = {t if backend == "onnxruntime" else None for t in threads}
        steps = (len(keys) * len(timed) if backend != "eager" else 0) + len(threads) * len(
            batch_sizes
        )
        quiet = not sys.stderr.isatty() if progress is None else not progress
        bar = tqdm(total=steps, desc="measure", disable=quiet, leave=False, unit="step")
        for t in threads:  # an ONNX Runtime session is made for its thread count
            key = t if backend == "onnxruntime" else None
            if key not in prepared:
                prepared[key] = []
                for which, m in zip(("baseline", "model")[-len(timed) :], timed, strict=True):
                    bar.set_description(f"{backend}: preparing the {which}")
                    prepared[key].append(prepare(m, backend, one, t))
                    bar.update(int(backend != "eager"))
                for p in prepared[key]:
                    prepare_seconds.append(p.seconds)
            runners = [p.module for p in prepared[key]]
            for b in batch_sizes:
                bar.set_description(f"{backend}: timing batch {b}, {t} thread(s)")
                res = time_models(runners, one, b, t, min_run_time=min_run_time, memory_format=fmt)
                bar.update()
                timings.append(res[-1])
                if baseline is not None:
                    base_timings.append(res[0])
        bar.close()
        timings.sort(
            key=lambda lat: (batch_sizes.index(lat.batch_size), threads.index(lat.threads))
        )
        base_timings.sort(
            key=lambda lat: (batch_sizes.index(lat.batch_size), threads.index(lat.threads))
        )
        if per_layer_latency and runs_on is None:
            per_layer = layer_latency(model, one, batch_sizes[0], threads[0])
            for row in rows:
                row.latency_ms = per_layer.get(row.name)
    result = Measurement(
        model=type(model).__name__,
        input_shape=list(one[0].shape[1:]),
        params=count_params(counted),
        nonzero_params=count_nonzero(counted),
        flops=flops,
        size_bytes=model.stored_bytes() if hasattr(model, "stored_bytes") else size_bytes(model),
        layers=rows,
        latency=timings,
        backend=backend_name(backend)
        + (", BatchNorm folded, channels-last" if layout == "deploy" and latency else "")
        + (f"; the quantized model on {runs_on}" if runs_on and latency else ""),
        prepare_seconds=prepare_seconds,
    )
    if baseline is not None:
        bflops, bmod = count_flops(baseline, one)
        base_m = Measurement(
            model=type(baseline).__name__,
            input_shape=result.input_shape,
            params=count_params(baseline),
            nonzero_params=count_nonzero(baseline),
            flops=bflops,
            size_bytes=size_bytes(baseline),
            layers=layer_counts(baseline, bmod),
            latency=base_timings,
            backend=result.backend,
        )
        result.baseline = base_m
        result.comparison = compare(base_m, result)
        result.warnings += flops_without_speed_warnings(result.comparison)
    return result


def plain(model: nn.Module) -> nn.Module:
    """``model`` itself, or a baked copy if it carries masks or shared-weight parametrizations."""
    if not any(parametrize.is_parametrized(m) for m in model.modules()):
        return model
    return baked_copy(model)


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("inf")


def compare(base: Measurement, cand: Measurement) -> Comparison:
    """The survey's metrics for ``cand`` against ``base`` (latencies paired by setting)."""
    a, a_star = base.params, cand.nonzero_params
    speedups = [
        {
            "batch_size": c.batch_size,
            "threads": c.threads,
            "speedup": _ratio(b.median_ms, c.median_ms),
            "baseline_ms": b.median_ms,
            "candidate_ms": c.median_ms,
        }
        for b, c in zip(base.latency, cand.latency, strict=True)
    ]
    return Comparison(
        compression_rate=_ratio(a, a_star),
        index_space_saving=_ratio(a - a_star, a_star),
        compression_rate_bytes=_ratio(base.size_bytes, cand.size_bytes),
        flops_reduction=_ratio(base.flops, cand.flops),
        speedup=speedups,
    )


def flops_without_speed_warnings(c: Comparison) -> list[str]:
    """Warn where fewer FLOPs brought no measured gain."""
    if c.flops_reduction < FLOPS_GAIN_WORTH_WARNING:
        return []
    return [
        f"FLOPs fell {c.flops_reduction:.2f}x but the measured speedup at batch "
        f"{s['batch_size']}, {s['threads']} thread(s) is {s['speedup']:.2f}x: fewer FLOPs "
        f"brought no measured gain on this backend"
        for s in c.speedup
        if s["speedup"] < SPEEDUP_NOTICED
    ]


def _num(n: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f}{unit}"
    return f"{n:.0f}"


def format_measurement(m: Measurement) -> str:
    """A plain-text table of a :class:`Measurement`."""
    head = ("layer", "type", "params", "nonzero", "FLOPs", "bytes", "ms")
    rows = [
        (
            r.name,
            r.type,
            f"{r.params:,}",
            f"{r.nonzero_params:,}",
            _num(r.flops),
            f"{r.size_bytes:,}",
            "" if r.latency_ms is None else f"{r.latency_ms:.3f}",
        )
        for r in m.layers
    ]
    total_ms = "" if m.latency_ms is None else f"{m.latency_ms:.3f}"
    rows.append(
        (
            "total",
            m.model,
            f"{m.params:,}",
            f"{m.nonzero_params:,}",
            _num(m.flops),
            f"{m.size_bytes:,}",
            total_ms,
        )
    )
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    out = [
        f"{m.model}, input {tuple(m.input_shape)}; FLOPs per example (1 multiply-add = 2 FLOPs)",
        line(head),
        line(["-" * w for w in widths]),
    ]
    out += [line(r) for r in rows[:-1]] + [line(["-" * w for w in widths]), line(rows[-1])]
    if m.latency:
        out.append(f"latency on {m.backend} (median +- IQR of {m.latency[0].runs}+ blocks):")
        if any(m.prepare_seconds):
            out.append(
                "  compile/export time, not in the latency: "
                + ", ".join(f"{s:.1f} s" for s in m.prepare_seconds)
            )
        for lat in m.latency:
            out.append(
                f"  batch {lat.batch_size:>4}, {lat.threads} thread(s): "
                f"{lat.median_ms:.3f} ms +- {lat.iqr_ms:.3f}"
            )
    if m.comparison is not None and m.baseline is not None:
        c = m.comparison
        out.append(
            f"against baseline {m.baseline.model} ({m.baseline.params:,} params, "
            f"{_num(m.baseline.flops)} FLOPs, {m.baseline.size_bytes:,} bytes):"
        )
        out.append(
            f"  compression rate alpha = a/a* = {c.compression_rate:.2f}x (non-zero "
            f"params), index space saving beta = {c.index_space_saving:.2f}, "
            f"bytes {c.compression_rate_bytes:.2f}x"
        )
        out.append(f"  FLOPs reduction {c.flops_reduction:.2f}x")
        for s in c.speedup:
            out.append(
                f"  speedup delta = s/s* at batch {s['batch_size']}, {s['threads']} "
                f"thread(s): {s['speedup']:.2f}x ({s['baseline_ms']:.3f} -> "
                f"{s['candidate_ms']:.3f} ms)"
            )
    out += [f"warning: {w}" for w in m.warnings]
    return "\n".join(out)
