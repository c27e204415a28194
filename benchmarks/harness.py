"""What every benchmark shares: where results go, the provenance of a run, and writing the
JSON and Markdown reports. Timing itself is ``squeezer.analysis.time_models`` (baseline and
candidates alternating, medians).

    report = {**provenance("structured_pruning.py"), "rows": rows, ...}
    write_report("structured_pruning", report, to_markdown)
"""

from __future__ import annotations

import datetime as dt
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

import squeezer as sq

RESULTS = Path(__file__).resolve().parent / "results"
CHECKPOINTS = RESULTS / "checkpoints"
STARTED = time.perf_counter()


def provenance(script: str, backend: str | None = None) -> dict[str, Any]:
    """The command that reproduces this run, when, and on what (backend, threads, versions)."""
    return {
        "command": " ".join([f"python benchmarks/{script}", *sys.argv[1:]]),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "backend": backend or sq.analysis.backend_name(),
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "squeezer": sq.__version__,
    }


def elapsed() -> float:
    """Seconds since the benchmark started."""
    return time.perf_counter() - STARTED


def write_report(
    name: str, report: dict[str, Any], to_markdown: Callable[[dict[str, Any]], str]
) -> str:
    """Write ``results/NAME.json`` and ``results/NAME.md``; returns the Markdown."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    text = to_markdown(report)
    (RESULTS / f"{name}.md").write_text(text)
    return text


def read_report(name: str) -> dict[str, Any] | None:
    """An earlier ``results/NAME.json``, for benchmarks that update parts of it."""
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def on_backend(
    models: list[nn.Module], backend: str, x: torch.Tensor, threads: int
) -> tuple[list[nn.Module], torch.memory_format, list[float]]:
    """``models`` made ready for ``backend`` (``eager``, ``compile`` or ``onnxruntime``, with
    ``-fused-cl`` for BatchNorm folded and channels-last first), the input layout to time them
    in, and the compile or export seconds of each."""
    layout = torch.contiguous_format
    if backend.endswith("-fused-cl"):
        models = [sq.analysis.inference_copy(m, channels_last=True) for m in models]
        layout = torch.channels_last
        backend = backend.removesuffix("-fused-cl")
    ready = [sq.deploy.prepare(m, backend, x.contiguous(memory_format=layout), threads)
             for m in models]  # fmt: skip
    return [r.module for r in ready], layout, [r.seconds for r in ready]


def trained(
    name: str,
    dataset: str,
    train: Any,
    epochs: int,
    log: Callable[[str], None] = print,
    device: str | None = None,
) -> nn.Module:
    """Zoo model ``name`` trained on ``dataset`` (seed 0, SGD at lr 0.05), from
    ``results/checkpoints/NAME-DATASET.pt`` when an earlier benchmark left it there."""
    path = CHECKPOINTS / f"{name}-{dataset}.pt"
    if path.exists():
        log(f"   baseline from {path}")
        return sq.load_checkpoint(path)
    torch.manual_seed(0)
    shape = train.input_shape
    model = sq.models.create(
        name, num_classes=train.num_classes, in_channels=shape[0], input_size=shape[1]
    )
    log(f"   training {name} on {dataset}, {epochs} epochs")
    sq.fit(model, train, epochs=epochs, lr=0.05, verbose=True, device=device)
    model.cpu()
    CHECKPOINTS.mkdir(parents=True, exist_ok=True)
    sq.save_checkpoint(model, path, meta={"dataset": dataset})
    return model


def time_against_first(
    rows: list[dict[str, Any]],
    models: list[nn.Module],
    x: torch.Tensor,
    batch_sizes: list[int],
    min_run_time: float,
    label: str = "first",
    backend: str = "eager",
) -> None:
    """Time every model alternately with ``models[0]`` at each batch size (all threads,
    medians) on ``backend`` (see :func:`on_backend`) and write ``b{B}_ms`` and
    ``b{B}_vs_{label}`` (the first's time over this one's) into its row, prefixed with
    ``{backend}_`` for a backend other than eager; a model the backend cannot take gets
    ``{backend}_failed`` with the reason instead."""
    threads = torch.get_num_threads()
    prefix = "" if backend == "eager" else f"{backend}_"
    for row, model in zip(rows, models, strict=True):
        try:
            ready, layout, _ = on_backend([models[0], model], backend, x, threads)
        except Exception as err:  # an export failure is a result
            row[f"{backend}_failed"] = f"{type(err).__name__}: {err}"[:300]
            continue
        for batch in batch_sizes:
            try:
                t = sq.analysis.time_models(
                    ready, (x,), batch, threads, min_run_time=min_run_time, memory_format=layout
                )
            except Exception as err:  # e.g. an ONNX file whose batch is fixed: a result too
                row[f"{prefix}b{batch}_failed"] = f"{type(err).__name__}: {err}"[:300]
                continue
            row[f"{prefix}b{batch}_ms"] = t[1].median_ms
            row[f"{prefix}b{batch}_vs_{label}"] = t[0].median_ms / t[1].median_ms
