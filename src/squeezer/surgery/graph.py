"""The dependency graph of coupled channels, built from a ``torch.fx`` trace.

Every channel of every intermediate tensor gets a *slot*. A convolution or linear layer
creates new slots for its outputs; operations that act per channel (BatchNorm, activations,
pooling, dropout) pass slots through; a residual addition merges the slots of its operands
index by index (union-find); concatenation lines slots up with offsets; a depthwise
convolution passes its input slots through, coupling its filters to its inputs; a flatten
repeats each channel's slot over its block of features. Each equivalence class of slots is a
set of channels that must be removed together (the idea of Torch-Pruning's DepGraph, Fang et
al. 2023). The graph input, the graph output and everything touched by an operation the graph
does not understand are *locked*: never removed, with a warning naming the operation.
"""

from __future__ import annotations

import itertools
import operator
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from squeezer.errors import SurgeryError


@dataclass
class Binding:
    """Module ``module``'s indices along one axis, each tied to a slot.

    ``kind`` is ``"out"`` (conv filters or linear rows: the layer *produces* these channels),
    ``"in"`` (conv input channels or linear columns), ``"bn"`` (per-channel normalization
    parameters) or ``"dw"`` (a depthwise convolution: filter i reads input channel i).
    """

    module: str
    kind: str
    slots: np.ndarray


PASS_MODULES = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ELU,
    nn.SELU,
    nn.GELU,
    nn.SiLU,
    nn.Sigmoid,
    nn.Tanh,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Mish,
    nn.Dropout,
    nn.Dropout2d,
    nn.Dropout1d,
    nn.AlphaDropout,
    nn.Identity,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
)
PASS_FUNCTIONS = {
    F.relu,
    F.relu6,
    F.leaky_relu,
    F.gelu,
    F.silu,
    F.elu,
    F.hardswish,
    F.sigmoid,
    F.tanh,
    torch.relu,
    torch.sigmoid,
    torch.tanh,
    F.dropout,
    F.dropout2d,
    F.max_pool2d,
    F.avg_pool2d,
    F.adaptive_avg_pool2d,
    F.adaptive_max_pool2d,
    torch.nn.functional.relu_,
    F.hardsigmoid,
    F.hardtanh,
    F.mish,
    F.softplus,
    F.selu,
    F.celu,
    F.prelu,
    torch.nn.functional.silu,
    torch.exp,
}
PASS_METHODS = {
    "relu", "relu_", "sigmoid", "sigmoid_", "tanh", "contiguous", "clone", "detach", "exp",
    "clamp", "clamp_", "float", "to",
}  # fmt: skip
ADD_LIKE = {
    operator.add,
    operator.iadd,
    torch.add,
    operator.sub,
    torch.sub,
    operator.mul,
    operator.imul,
    torch.mul,
    operator.truediv,
    operator.itruediv,
    torch.div,
}
ADD_METHODS = {"add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_"}
# Modules the tracer keeps whole (not traced into), subclasses included: timm's BatchNormAct2d
# is a BatchNorm2d whose forward adds an activation, which acts per channel.
LEAF_TYPES = (
    nn.Conv2d,
    nn.Linear,
    nn.modules.batchnorm._BatchNorm,
    nn.GroupNorm,
    nn.Flatten,
    *PASS_MODULES,
)


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, LEAF_TYPES) or super().is_leaf_module(m, module_qualified_name)


class _UnionFind:
    def __init__(self) -> None:
        self.parent: list[int] = []

    def new(self, n: int) -> np.ndarray:
        start = len(self.parent)
        self.parent.extend(range(start, start + n))
        return np.arange(start, start + n, dtype=np.int64)

    def find(self, a: int) -> int:
        root = a
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[a] != root:
            self.parent[a], a = root, self.parent[a]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def _user_line(exc: BaseException) -> str:
    """``file:line: code`` of the innermost frame outside torch where tracing failed."""
    import linecache
    import traceback

    libraries = (str(Path(torch.__file__).parent), str(Path(__file__).parents[1]))
    frames = [
        f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith(libraries)
    ]
    if not frames:
        return ""
    f = frames[-1]
    code = (f.line or linecache.getline(f.filename, f.lineno or 0)).strip()
    return f"{f.filename}:{f.lineno}: {code}"


class ChannelGraph:
    """Which channels of which layers must be removed together.

    Args:
        model: the network (traced with ``torch.fx.symbolic_trace``).
        example_inputs: inputs to propagate shapes with.

    Raises:
        SurgeryError: the model cannot be traced.
    """

    def __init__(self, model: nn.Module, example_inputs: Tensor | tuple[Tensor, ...]) -> None:
        inputs = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
        try:
            self.gm = fx.GraphModule(model, _Tracer().trace(model), type(model).__name__)
        except Exception as exc:  # fx raises many types for untraceable code
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            where = _user_line(exc)
            raise SurgeryError(
                f"cannot trace {type(model).__name__} with torch.fx ({first})"
                + (f" at {where}" if where else "")
                + "; no channel can be removed safely"
            ) from None
        was_training = model.training
        self.gm.eval()
        with torch.no_grad():
            ShapeProp(self.gm).propagate(*inputs)
        self.gm.train(was_training)
        self.uf = _UnionFind()
        self.bindings: list[Binding] = []
        self.locked: set[int] = set()
        self.warnings: list[str] = []
        self._build()

    # ----------------------------------------------------------------- building
    def _shape(self, node: fx.Node) -> tuple[int, ...] | None:
        meta = node.meta.get("tensor_meta")
        return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None

    def _fresh(self, node: fx.Node, lock: bool) -> np.ndarray | None:
        shape = self._shape(node)
        if shape is None or len(shape) < 2:
            return None
        slots = self.uf.new(shape[1])
        if lock:
            self.locked.update(slots.tolist())
        return slots

    def _lock(self, *values: Any) -> None:
        for v in values:
            if isinstance(v, np.ndarray):
                self.locked.update(v.tolist())

    def _unknown(self, node: fx.Node, what: str, inputs: Sequence[Any]) -> np.ndarray | None:
        if any(isinstance(v, np.ndarray) for v in inputs):
            self.warnings.append(
                f"{what} ({node.name}) is not understood; the channels around it are left unpruned"
            )
        self._lock(*inputs)
        return self._fresh(node, lock=True)

    def _build(self) -> None:
        env: dict[str, Any] = {}
        self._env = env

        def val(a: Any) -> Any:
            return env.get(a.name) if isinstance(a, fx.Node) else None

        for node in self.gm.graph.nodes:
            args = [val(a) for a in node.args]
            if node.op == "placeholder":
                env[node.name] = self._fresh(node, lock=True)
            elif node.op == "get_attr":
                env[node.name] = None
            elif node.op == "call_module":
                env[node.name] = self._module(node, self.gm.get_submodule(node.target), args)
            elif node.op in ("call_function", "call_method"):
                env[node.name] = self._function(node, args)
            elif node.op == "output":
                flat = node.args[0] if isinstance(node.args[0], (tuple, list)) else [node.args[0]]
                self._lock(*[val(a) for a in flat])

    def _module(self, node: fx.Node, m: nn.Module, args: list[Any]) -> np.ndarray | None:
        x = args[0] if args else None
        name = str(node.target)
        if not isinstance(x, np.ndarray):
            return self._fresh(node, lock=True)
        if isinstance(m, nn.Conv2d):
            if m.groups == 1:
                self.bindings.append(Binding(name, "in", x))
                out = self.uf.new(m.out_channels)
                self.bindings.append(Binding(name, "out", out))
                return out
            if m.groups == m.in_channels == m.out_channels:
                self.bindings.append(Binding(name, "dw", x))
                return x
            return self._unknown(node, f"grouped convolution {name}", [x])
        if isinstance(m, nn.Linear):
            shape = self._shape(node.args[0])
            if shape is None or len(shape) != 2:
                return self._unknown(node, f"linear layer {name} on a {shape} input", [x])
            self.bindings.append(Binding(name, "in", x))
            out = self.uf.new(m.out_features)
            self.bindings.append(Binding(name, "out", out))
            return out
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            self.bindings.append(Binding(name, "bn", x))
            return x
        if isinstance(m, nn.GroupNorm) and len(x) == m.num_channels:
            # Statistics are shared within a group: only whole groups can go (then exactly).
            size = m.num_channels // m.num_groups
            for g in range(m.num_groups):
                for k in range(1, size):
                    self.uf.union(int(x[g * size]), int(x[g * size + k]))
            self.bindings.append(Binding(name, "bn", x))
            return x
        if isinstance(m, PASS_MODULES):
            return x
        if isinstance(m, nn.Flatten):
            return self._flatten(node, x, m.start_dim, m.end_dim)
        return self._unknown(node, f"module {name} ({type(m).__name__})", [x])

    def _flatten(
        self, node: fx.Node, x: np.ndarray, start: int, end: int = -1
    ) -> np.ndarray | None:
        shape = self._shape(node.args[0])
        if shape is None:
            return self._unknown(node, "flatten", [x])
        if start == 1 and end in (-1, len(shape) - 1):
            block = int(np.prod(shape[2:], dtype=np.int64)) if len(shape) > 2 else 1
            return np.repeat(x, block)
        return self._unknown(node, "flatten", [x])

    def _function(self, node: fx.Node, args: list[Any]) -> np.ndarray | None:
        target = node.target
        x = args[0] if args else None
        kwargs = node.kwargs
        if node.op == "call_method" and target in ("size", "dim", "numel"):
            return None
        if target is operator.getitem and isinstance(x, list):  # one part of a chunk/split
            index = node.args[1]
            return x[index] if isinstance(index, int) and -len(x) <= index < len(x) else None
        if target in (torch.chunk, torch.split) or (
            node.op == "call_method" and target in ("chunk", "split")
        ):
            return self._split(node, x)
        if target in PASS_FUNCTIONS or (node.op == "call_method" and target in PASS_METHODS):
            return x if isinstance(x, np.ndarray) else self._fresh(node, lock=True)
        if target in ADD_LIKE or (node.op == "call_method" and target in ADD_METHODS):
            return self._elementwise(node, target, args)
        if target in (torch.cat, torch.concat) or (node.op == "call_method" and target == "cat"):
            parts = node.args[0] if node.args else kwargs.get("tensors")
            dim = node.args[1] if len(node.args) > 1 else kwargs.get("dim", 0)
            values = [self._lookup(p) for p in parts]
            shape = self._shape(node)
            if (
                shape is not None
                and dim in (1, 1 - len(shape))
                and all(isinstance(v, np.ndarray) for v in values)
            ):
                return np.concatenate(values)
            return self._unknown(node, "concatenation", values)
        if target in (torch.flatten,) or (node.op == "call_method" and target == "flatten"):
            start = node.args[1] if len(node.args) > 1 else kwargs.get("start_dim", 0)
            end = node.args[2] if len(node.args) > 2 else kwargs.get("end_dim", -1)
            if isinstance(x, np.ndarray):
                return self._flatten(node, x, start, end)
        if node.op == "call_method" and target in ("view", "reshape") and isinstance(x, np.ndarray):
            before, after = self._shape(node.args[0]), self._shape(node)
            if before and after and len(after) == 2 and after[0] == before[0]:
                return self._flatten(node, x, 1)
            return self._unknown(node, target, [x])
        if target in (torch.mean,) or (node.op == "call_method" and target == "mean"):
            dims = node.args[1] if len(node.args) > 1 else kwargs.get("dim")
            dims = (dims,) if isinstance(dims, int) else tuple(dims or ())
            if isinstance(x, np.ndarray) and dims and all(d not in (0, 1) for d in dims):
                return x
        if not any(isinstance(a, np.ndarray) for a in args) and not any(
            isinstance(self._lookup(v), np.ndarray) for v in kwargs.values()
        ):
            return None if self._shape(node) is None else self._fresh(node, lock=True)
        return self._unknown(node, f"operation {getattr(target, '__name__', target)}", args)

    def _split(self, node: fx.Node, x: Any) -> Any:
        """``chunk``/``split`` along the channels: one slot array per part (GLU-style gates)."""
        shape = self._shape(node.args[0]) if node.args else None
        dim = node.args[2] if len(node.args) > 2 else node.kwargs.get("dim", 0)
        how = (
            node.args[1]
            if len(node.args) > 1
            else node.kwargs.get("chunks", node.kwargs.get("split_size_or_sections"))
        )
        if not isinstance(x, np.ndarray) or shape is None or dim not in (1, 1 - len(shape)):
            return self._unknown(node, str(getattr(node.target, "__name__", node.target)), [x])
        n = len(x)
        if node.target in ("chunk", torch.chunk):
            step = -(-n // int(how))  # torch.chunk: parts of ceil(n / chunks)
            sizes = [min(step, n - s) for s in range(0, n, step)]
        elif isinstance(how, int):
            sizes = [min(how, n - s) for s in range(0, n, how)]
        else:
            sizes = [int(s) for s in how]
        bounds = np.cumsum([0, *sizes])
        return [x[a:b] for a, b in itertools.pairwise(bounds)]

    def _elementwise(self, node: fx.Node, target: Any, args: list[Any]) -> np.ndarray | None:
        """Add, subtract, multiply or divide, with broadcasting.

        Operands with the same channels are coupled index by index (a residual addition, a
        squeeze-excitation gate of shape N x C x 1 x 1); an operand with one channel, or one
        that is a constant, broadcasts and couples nothing (it is locked: it stays whole).
        """
        operands = [
            (v, a) for v, a in zip(args, node.args, strict=False) if isinstance(v, np.ndarray)
        ]
        for a in node.args:  # a learned per-channel tensor (layer scale) would not fit
            shape = self._shape(a) if isinstance(a, fx.Node) and a.op == "get_attr" else None
            if shape is not None and int(np.prod(shape, dtype=np.int64)) > 1:
                values = [v for v, _ in operands]
                return self._unknown(node, f"{node.name} with parameter {a.target}", values)
        if not operands:
            return self._fresh(node, lock=True) if self._shape(node) else None
        out_shape = self._shape(node)
        full = [(v, a) for v, a in operands if len(v) == (out_shape[1] if out_shape else -1)]
        if out_shape is None or len(out_shape) < 2 or not full:
            return self._unknown(
                node, f"{getattr(target, '__name__', target)}", [v for v, _ in operands]
            )
        for v, a in operands:
            shape = self._shape(a) if isinstance(a, fx.Node) else None
            if shape is None or len(shape) != len(out_shape):
                return self._unknown(
                    node, f"{getattr(target, '__name__', target)}", [v for v, _ in operands]
                )
        first = full[0][0]
        for v, _ in operands:
            if v is first:
                continue
            if len(v) == len(first):
                for a, b in zip(first.tolist(), v.tolist(), strict=True):
                    self.uf.union(a, b)
            else:  # broadcast along channels: a single-channel operand stays whole
                self._lock(v)
        return first

    def _lookup(self, a: Any) -> Any:
        return self._env.get(a.name) if isinstance(a, fx.Node) else None

    # ----------------------------------------------------------------- queries
    def classes(self) -> dict[int, list[int]]:
        """Equivalence classes of slots: root -> members."""
        out: dict[int, list[int]] = defaultdict(list)
        for s in range(len(self.uf.parent)):
            out[self.uf.find(s)].append(s)
        return dict(out)

    def locked_roots(self) -> set[int]:
        return {self.uf.find(s) for s in self.locked}

    def members(self, root: int) -> list[tuple[Binding, int]]:
        """Every ``(binding, index)`` whose slot belongs to class ``root``."""
        found = []
        for b in self.bindings:
            roots = np.array([self.uf.find(int(s)) for s in b.slots])
            for i in np.flatnonzero(roots == root):
                found.append((b, int(i)))
        return found
