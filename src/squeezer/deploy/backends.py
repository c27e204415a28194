"""Execution backends for timing: eager PyTorch, ``torch.compile`` and ONNX Runtime.

:func:`prepare` turns a model into something :func:`squeezer.analysis.time_models` can time on
a backend, and says how long that took (compilation, export), which is reported apart from the
latency. Baseline and candidate are always prepared on the same backend and timed alternately.
"""

from __future__ import annotations

import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from squeezer.core.inputs import Inputs, as_tuple, batch_of
from squeezer.errors import BackendError

BACKENDS = ("eager", "compile", "onnxruntime")
RECOMPILE_LIMIT = 256  # compiled variants per code object before Dynamo falls back to eager


class OnnxRuntimeModule(nn.Module):
    """An ONNX Runtime session that runs like a module (the first output, as a tensor)."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        super().__init__()
        from squeezer.deploy.export import session

        self.path = str(path)
        self.session = session(path, threads)
        self.names = [i.name for i in self.session.get_inputs()]

    def forward(self, *inputs: Tensor) -> Tensor:
        feed = {n: t.detach().cpu().numpy() for n, t in zip(self.names, inputs, strict=True)}
        return torch.from_numpy(self.session.run(None, feed)[0])


@dataclass
class Prepared:
    """A model made ready for a backend, and the seconds that took."""

    module: nn.Module
    backend: str
    seconds: float


def check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r}: choose from {', '.join(BACKENDS)}")


def prepare(
    model: nn.Module, backend: str, example_inputs: Inputs, threads: int | None = None
) -> Prepared:
    """``model`` ready to time on ``backend``.

    - ``eager``: the model itself.
    - ``compile``: ``torch.compile(model)`` (Inductor, C++ on the CPU), compiled by one call
      on the example; later batch sizes recompile during the timing's warm-up. Dynamo keeps
      one cache per code object, so an original and its pruned copies (instances of one
      class) share it; past its recompile limit (8) Dynamo silently runs eager, so the limit
      is raised to :data:`RECOMPILE_LIMIT`.
    - ``onnxruntime``: exported to ONNX (dynamic batch) in a temporary folder and loaded in an
      ONNX Runtime session with ``threads`` intra-op threads.

    A model that says which backend it was made for (``model.runtime``, as an int8
    :class:`~squeezer.quantization.QuantizedModel` does) is returned as it is.

    Raises:
        BackendError: an unknown backend, a runtime not installed, or a model the backend
            cannot run (with the reason).
    """
    check_backend(backend)
    runtime = getattr(model, "runtime", None)
    if runtime is not None:  # a quantized model, already made for its backend
        return Prepared(model, runtime, 0.0)
    if backend == "eager":
        return Prepared(model, backend, 0.0)
    was = model.training
    model.eval()
    try:
        return _prepare(model, backend, batch_of(example_inputs, 1), threads)
    finally:
        model.train(was)


def _prepare(
    model: nn.Module, backend: str, one: tuple[Tensor, ...], threads: int | None
) -> Prepared:
    t0 = time.perf_counter()
    if backend == "compile":
        import torch._dynamo.config as dynamo_config

        if dynamo_config.recompile_limit < RECOMPILE_LIMIT:
            dynamo_config.recompile_limit = RECOMPILE_LIMIT
        compiled = torch.compile(model)
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                compiled(*one)
        except Exception as exc:  # Inductor raises many types
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BackendError(
                f"torch.compile cannot run {type(model).__name__}: {first[:200]}"
            ) from None
        return Prepared(compiled, backend, time.perf_counter() - t0)
    from squeezer.deploy.export import require_onnxruntime, to_onnx

    require_onnxruntime()
    folder = Path(tempfile.mkdtemp(prefix="squeezer-ort-"))
    path = folder / "model.onnx"
    to_onnx(model, as_tuple(one), path)
    module = OnnxRuntimeModule(path, threads)
    path.unlink()  # the session holds the model; nothing is left behind
    folder.rmdir()
    return Prepared(module, backend, time.perf_counter() - t0)
