"""ONNX export with a check: the file is run in ONNX Runtime and compared with PyTorch.

    report = sq.export(model, x, "m.onnx", check=test_set)
    print(report)  # max |ONNX - PyTorch| on x; top-1 agreement and both accuracies on test_set

The graph comes from ``torch.onnx.export`` (the ``torch.export``-based exporter), with a dynamic
batch dimension. Masks and shared-weight codebooks are baked into plain weights first. The file
is written to a temporary name and moved into place only once it loads and runs, so a failed
export leaves no half-written file.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sys
import tempfile
import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from squeezer.core.inputs import as_tuple
from squeezer.errors import BackendError, ExportError


def require_onnxruntime() -> Any:
    """The ``onnxruntime`` module, or a :class:`BackendError` saying how to install it."""
    try:
        import onnxruntime
    except ImportError:
        raise BackendError(
            "ONNX Runtime is not installed (a dependency of squeezer): pip install onnxruntime"
        ) from None
    return onnxruntime


def _cause(exc: BaseException) -> str:
    """The operation the exporter could not translate, in one line, where it says so."""
    text = str(exc)
    m = re.search(r"No ONNX function found for <OpOverload\(op='([^']+)', overload='([^']+)'\)>"
                  r"\.?\s*(?:Failure message: ([^\n]+))?", text)  # fmt: skip
    if m:
        op = f"{m.group(1)}.{m.group(2)}"
        return f"operation {op} has no ONNX form" + (
            f" ({m.group(3).strip()})" if m.group(3) else ""
        )
    m = re.search(r"## Exception summary\s+(.+?)(?:\n\n|$)", text, re.S)
    if m:
        line = re.sub(r"<class '[^']*\.(\w+)'>", r"\1", m.group(1).strip().splitlines()[0])
        return re.sub(r"\x1b\[[0-9;]*m", "", line)[:300]
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return re.sub(r"\x1b\[[0-9;]*m", "", first)[:300]


def export_form(model: nn.Module) -> nn.Module:
    """``model`` with every submodule that has an ``export_form()`` replaced by what that
    returns: an equivalent made of operations the exporter knows (a CSR sparse layer becomes
    a dense one). Edits ``model`` in place and returns it."""
    if callable(getattr(model, "export_form", None)):
        return model.export_form()
    for name, module in list(model.named_modules()):
        if name and callable(getattr(module, "export_form", None)):
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            if isinstance(getattr(parent, child, None), nn.Module):
                setattr(parent, child, module.export_form())
    return model


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence the warnings, log lines and prints of the exporters and torchao (deprecations,
    CUDA libraries they cannot load on a CPU machine), so the user sees only squeezer's."""
    loggers = [
        logging.getLogger(n)
        for n in ("torch.onnx", "torch.export", "onnxscript", "torchao", "torch.utils._pytree")
    ]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def to_onnx(model: nn.Module, inputs: tuple[Tensor, ...], path: Path) -> None:
    """Write ``model`` as ONNX to ``path`` (batch dimension dynamic), quietly.

    Raises:
        ExportError: naming the operation or the reason the exporter gave.
    """
    from squeezer.core.modules import baked_copy

    plain = export_form(baked_copy(model)).eval()
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    dynamic = tuple({0: batch} for _ in inputs)
    # traced on a batch of two: with one example, torch.export specializes the batch
    # dimension to the constant 1 wherever the model's code compares it, and the file would
    # only take batches of one
    two = tuple(t.expand(2, *t.shape[1:]).contiguous() if t.shape[0] == 1 else t for t in inputs)
    try:
        with quiet(), torch.no_grad():
            try:
                torch.onnx.export(
                    plain, two, str(path), dynamo=True, dynamic_shapes=dynamic,
                    external_data=False, verbose=False,
                )  # fmt: skip
            except Exception:  # some models fix the batch size in their forward
                torch.onnx.export(
                    plain, inputs, str(path), dynamo=True, external_data=False, verbose=False
                )
    except ImportError as exc:
        raise BackendError(
            f"ONNX export needs onnx and onnxscript ({exc}): pip install onnx onnxscript"
        ) from None
    except Exception as exc:  # the exporter raises many types
        raise ExportError(f"cannot export {type(model).__name__} to ONNX: {_cause(exc)}") from None


def session(path: str | Path, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session for ``path`` with ``threads`` intra-op threads.

    The threads block when idle instead of spinning. ONNX Runtime's default keeps them
    spinning after each run, which on a small machine steals the cores from whatever runs
    next: timed in alternation on this 2-core machine, a float and an int8 MobileNetV2 each
    took about twice their time alone (9-13 ms against 5), and the ratio between them swung
    from 0.9x to 2.6x from one run to the next. Without spinning, alternating and alone agree
    within 5%; alone, a spinning session is about 6% faster at batch 1.

    Raises:
        ExportError: the file is not a loadable ONNX model.
    """
    ort = require_onnxruntime()
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"{path}: not a loadable ONNX model ({first[:200]})") from None


def run_session(sess: Any, inputs: tuple[Tensor, ...]) -> list[np.ndarray]:
    names = [i.name for i in sess.get_inputs()]
    if len(names) != len(inputs):
        raise ExportError(f"the ONNX model takes {len(names)} inputs, {len(inputs)} were given")
    return sess.run(None, {n: t.detach().cpu().numpy() for n, t in zip(names, inputs, strict=True)})


@dataclass
class ExportReport:
    """What the export wrote, how long it took, and how closely ONNX Runtime agrees."""

    path: str
    bytes: int
    export_seconds: float
    max_abs_diff: float
    examples: int
    opset: int | None = None
    check_examples: int = 0
    top1_agreement: float | None = None
    top1_pytorch: float | None = None
    top1_onnx: float | None = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def format(self) -> str:
        lines = [
            f"exported {self.path} ({self.bytes:,} bytes, opset {self.opset}) in "
            f"{self.export_seconds:.1f} s",
            f"max |ONNX Runtime - PyTorch| on {self.examples} example(s): {self.max_abs_diff:.3g}",
        ]
        if self.top1_agreement is not None:
            lines.append(
                f"on {self.check_examples:,} checked examples: top-1 agreement "
                f"{self.top1_agreement:.2%}, accuracy PyTorch {self.top1_pytorch:.2%}, "
                f"ONNX Runtime {self.top1_onnx:.2%}"
            )
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()


def _check_batches(check: Any, batch_size: int = 256) -> Iterable[tuple[Tensor, Tensor]]:
    """``check`` as batches of (inputs, labels): a dataset of pairs, or batches already."""
    from squeezer.data import ImageDataset, loader

    if isinstance(check, ImageDataset):
        return loader(check, batch_size)
    if isinstance(check, torch.utils.data.Dataset):
        return torch.utils.data.DataLoader(check, batch_size=batch_size)
    return check


def export(
    model: nn.Module,
    example_inputs: Tensor | tuple[Tensor, ...],
    path: str | Path,
    *,
    check: Any = None,
    tolerance: float = 1e-4,
    progress: bool | None = None,
) -> ExportReport:
    """Export ``model`` to ONNX at ``path``, run it in ONNX Runtime and compare.

    Args:
        model: any model squeezer made or loaded (pruned, factorized, shared, structured).
        example_inputs: inputs to trace with and compare on.
        path: the ``.onnx`` file to write (replaced only when the export succeeds).
        check: a dataset of ``(input, label)`` pairs, or batches of them: top-1 agreement of
            the two runtimes and both accuracies are reported.
        tolerance: the report warns when the max absolute difference exceeds this.
        progress: a progress bar over the ``check`` batches (default: when standard error is
            a terminal).

    Raises:
        ExportError: an operation cannot be exported (named), or the file does not run.
        BackendError: onnx, onnxscript or onnxruntime is not installed.
    """
    require_onnxruntime()
    inputs = as_tuple(example_inputs)
    path = Path(path)
    if path.parent and not path.parent.exists():
        raise ExportError(f"{path.parent}: no such folder")
    was = model.training
    model.eval()
    fd, tmp_name = tempfile.mkstemp(suffix=".onnx", dir=path.parent or ".")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        t0 = time.perf_counter()
        to_onnx(model, inputs, tmp)
        seconds = time.perf_counter() - t0
        sess = session(tmp)
        with torch.no_grad():
            ref = model(*inputs)
        ref = ref if isinstance(ref, (tuple, list)) else (ref,)
        outs = run_session(sess, inputs)
        diff = max(
            float(np.abs(o - r.detach().numpy()).max()) if o.size else 0.0
            for o, r in zip(outs, ref, strict=False)
        )
        report = ExportReport(str(path), tmp.stat().st_size, seconds, diff, int(inputs[0].shape[0]))
        try:
            import onnx

            report.opset = next(
                (
                    o.version
                    for o in onnx.load(str(tmp)).opset_import
                    if o.domain in ("", "ai.onnx")
                ),
                None,
            )
        except Exception:  # the opset is informative only
            report.opset = None
        if diff > tolerance:
            report.warnings.append(f"outputs differ by {diff:.3g} > {tolerance:g}")
        if check is not None:
            agree = correct_t = correct_o = n = 0
            with torch.no_grad():
                batches = _check_batches(check)
                try:
                    total = len(batches)  # type: ignore[arg-type]
                except TypeError:
                    total = None
                quiet = not sys.stderr.isatty() if progress is None else not progress
                bar = tqdm(
                    batches, total=total, desc="check", disable=quiet, leave=False, unit="batch"
                )
                for x, y in bar:
                    xs = as_tuple(x)
                    a = model(*xs)
                    a = a[0] if isinstance(a, (tuple, list)) else a
                    b = torch.from_numpy(run_session(sess, xs)[0])
                    pa, pb = a.argmax(-1), b.argmax(-1)
                    agree += int((pa == pb).sum())
                    correct_t += int((pa == y).sum())
                    correct_o += int((pb == y).sum())
                    n += int(y.shape[0])
            if n:
                report.check_examples = n
                report.top1_agreement = agree / n
                report.top1_pytorch = correct_t / n
                report.top1_onnx = correct_o / n
        del sess
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o666 & ~umask)  # mkstemp made it private; an export is an ordinary file
        os.replace(tmp, path)
        return report
    finally:
        model.train(was)
        if tmp.exists():
            tmp.unlink()
