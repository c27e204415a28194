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
    parameters), ``"dw"`` (a depthwise convolution: filter i reads input channel i), ``"gin"``
    (the input channels of a grouped convolution, removed a whole group at a time) or
    ``"param"`` (a learned tensor the forward reads directly, such as a layer scale: ``module``
    is then the parameter's qualified name and ``dim`` the axis its channels lie along).
    """

    module: str
    kind: str
    slots: np.ndarray
    dim: int = 0


# Pooling keeps the channels but needs them on axis 1; the other pass modules act per element.
POOLING = (
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
)
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
    *POOLING,
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
    nn.Conv1d,
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
        self.merges = 0  # grows with every union that joins two sets (a cache key)

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
            self.merges += 1


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


TRACERS = ("auto", "export", "fx")


class ChannelGraph:
    """Which channels of which layers must be removed together.

    Args:
        model: the network.
        example_inputs: inputs to trace and propagate shapes with.
        tracer: ``"export"`` (``torch.export``, non-strict, rewritten onto the model's own
            modules: :mod:`squeezer.surgery.exported`), ``"fx"`` (``torch.fx`` symbolic
            tracing, the library's layers kept whole) or ``"auto"``: export, and fx where
            export fails. ``self.tracer`` says which one traced.

    Raises:
        SurgeryError: the model cannot be traced.
    """

    def __init__(
        self,
        model: nn.Module,
        example_inputs: Tensor | tuple[Tensor, ...],
        tracer: str = "auto",
    ) -> None:
        inputs = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
        if tracer not in TRACERS:
            raise SurgeryError(f"tracer must be one of {', '.join(TRACERS)}, not {tracer!r}")
        failures = []
        self.gm = None
        for kind in ("export", "fx") if tracer == "auto" else (tracer,):
            try:
                self.gm = self._trace(kind, model, inputs)
                self.tracer = kind
                break
            except SurgeryError as err:
                failures.append(str(err))
        if self.gm is None:
            raise SurgeryError(
                f"cannot trace {type(model).__name__}: " + "; ".join(failures)
                + "; no channel can be removed safely"
            )  # fmt: skip
        self.uf = _UnionFind()
        self.bindings: list[Binding] = []
        self.locked: set[int] = set()
        self.warnings: list[str] = []
        # Operations whose kept outputs change when channels go (statistics over channels).
        self.inexact: list[str] = []
        self._axis: dict[str, int] = {}
        self._build()

    @staticmethod
    def _trace(kind: str, model: nn.Module, inputs: tuple[Tensor, ...]) -> fx.GraphModule:
        if kind == "export":
            from squeezer.surgery.exported import export_graph

            try:
                return export_graph(model, inputs)
            except Exception as exc:  # export raises many types for untraceable code
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                where = _user_line(exc)
                raise SurgeryError(
                    f"torch.export failed ({type(exc).__name__}: {first[:200]})"
                    + (f" at {where}" if where else "")
                ) from None
        try:
            gm = fx.GraphModule(model, _Tracer().trace(model), type(model).__name__)
        except Exception as exc:  # fx raises many types for untraceable code
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            where = _user_line(exc)
            raise SurgeryError(
                f"torch.fx failed ({first[:200]})" + (f" at {where}" if where else "")
            ) from None
        was_training = model.training
        gm.eval()
        try:
            with torch.no_grad():
                ShapeProp(gm).propagate(*inputs)
        finally:
            gm.train(was_training)
        return gm

    # ----------------------------------------------------------------- building
    def _shape(self, node: fx.Node) -> tuple[int, ...] | None:
        meta = node.meta.get("tensor_meta")
        return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None

    def _fresh(self, node: fx.Node, lock: bool) -> np.ndarray | None:
        shape = self._shape(node)
        if shape is None or len(shape) < 2:
            return None
        first = next(
            (a for a in node.args if isinstance(a, fx.Node) and a.name in self._axis), None
        )
        axis = self.ax(first) if first is not None else 1
        before = self._shape(first) if first is not None else None
        if before is None or len(before) != len(shape):
            axis = 1
        self._set_axis(node, axis)
        slots = self.uf.new(shape[axis])
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
                env[node.name] = self._parameter(node)
            elif node.op == "call_module":
                env[node.name] = self._module(node, self.gm.get_submodule(node.target), args)
            elif node.op in ("call_function", "call_method"):
                env[node.name] = self._function(node, args)
            elif node.op == "output":
                flat = node.args[0] if isinstance(node.args[0], (tuple, list)) else [node.args[0]]
                self._lock(*[val(a) for a in flat])
            if node.name not in self._axis:  # by default the channels stay where they were
                first = next(
                    (a for a in node.args if isinstance(a, fx.Node) and a.name in self._axis),
                    None,
                )
                self._axis[node.name] = self._axis[first.name] if first is not None else 1

    def ax(self, a: Any) -> int:
        """The axis the channels of node ``a``'s tensor lie along (1 unless moved)."""
        return self._axis.get(a.name, 1) if isinstance(a, fx.Node) else 1

    def _all_locked(self, v: Any) -> bool:
        roots = self.locked_roots_cache()
        return isinstance(v, np.ndarray) and all(self.uf.find(int(s)) in roots for s in v)

    def locked_roots_cache(self) -> set[int]:
        """The roots of the locked slots, recomputed only when a slot was locked or two sets
        were joined since the last call (both only grow, so their sizes are the key)."""
        key = (len(self.locked), self.uf.merges)
        if getattr(self, "_locked_key", None) != key:
            self._locked_roots = {self.uf.find(s) for s in self.locked}
            self._locked_key = key
        return self._locked_roots

    def _along(self, a: fx.Node, v: np.ndarray, axis: int) -> np.ndarray | None:
        """``v``, the slots of ``a``, along ``axis``; a wholly locked tensor (whose channel
        axis was lost) gets new locked slots there, since nothing of it can be removed."""
        if self.ax(a) == axis:
            return v
        shape = self._shape(a)
        if shape is None or axis >= len(shape) or not self._all_locked(v):
            return None
        slots = self.uf.new(shape[axis])
        self.locked.update(slots.tolist())
        return slots

    def _set_axis(self, node: fx.Node, axis: int) -> None:
        self._axis[node.name] = axis

    def _parameter(self, node: fx.Node) -> np.ndarray | None:
        """A learned tensor with one axis longer than 1 (a layer scale, a norm's weight, a
        class token): its entries become slots that can be removed with the channels they
        meet. Anything else is a constant (``None``)."""
        shape = self._shape(node)
        if shape is None:
            return None
        long = [d for d, n in enumerate(shape) if n > 1]
        if len(long) != 1:
            return None
        slots = self.uf.new(shape[long[0]])
        self.bindings.append(Binding(str(node.target), "param", slots, dim=long[0]))
        self._set_axis(node, long[0])
        return slots

    def _module(self, node: fx.Node, m: nn.Module, args: list[Any]) -> np.ndarray | None:
        x = args[0] if args else None
        name = str(node.target)
        if isinstance(m, nn.Embedding):
            return self._embedding(node, f"{name}.weight", m.weight.shape)
        if not isinstance(x, np.ndarray):
            return self._fresh(node, lock=True)
        shape_in = self._shape(node.args[0])
        last = isinstance(m, (nn.Linear, nn.LayerNorm))
        wanted = len(shape_in) - 1 if last and shape_in else 1
        if not (isinstance(m, PASS_MODULES) and not isinstance(m, POOLING)):
            moved = self._along(node.args[0], x, wanted)
            if moved is not None and moved is not x:
                x = moved
                self._set_axis(node.args[0], wanted)
                self._env[node.args[0].name] = moved
        axis = self.ax(node.args[0])
        if isinstance(m, (nn.Conv1d, nn.Conv2d)):
            if axis != 1:
                return self._unknown(node, f"convolution {name} over a moved channel axis", [x])
            if m.groups == 1:
                self.bindings.append(Binding(name, "in", x))
                out = self.uf.new(m.out_channels)
                self.bindings.append(Binding(name, "out", out))
                return out
            if m.groups == m.in_channels == m.out_channels:
                self.bindings.append(Binding(name, "dw", x))
                return x
            return self._grouped(node, name, m, x)
        if isinstance(m, nn.Linear):
            shape = self._shape(node.args[0])
            if shape is None or len(shape) < 2 or axis != len(shape) - 1:
                return self._unknown(node, f"linear layer {name} on a {shape} input", [x])
            self.bindings.append(Binding(name, "in", x))
            out = self.uf.new(m.out_features)
            self.bindings.append(Binding(name, "out", out))
            self._set_axis(node, len(shape) - 1)
            return out
        if isinstance(m, PASS_MODULES) and not isinstance(m, POOLING):
            return x  # acts on each element: the channels may lie along any axis
        if isinstance(m, nn.LayerNorm):
            if shape_in and axis == len(shape_in) - 1 and tuple(m.normalized_shape) == (len(x),):
                self.bindings.append(Binding(name, "bn", x))
                self.inexact.append(name)
                return x
            return self._unknown(node, f"layer norm {name}", [x])
        if axis != 1:
            return self._unknown(node, f"module {name} over a moved channel axis", [x])
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

    def _embedding(self, node: fx.Node, weight: str, shape: Sequence[int]) -> np.ndarray | None:
        """An embedding lookup: its channels are the columns of its table."""
        out = self._shape(node)
        if out is None or len(shape) != 2:
            return self._fresh(node, lock=True)
        slots = self.uf.new(int(shape[1]))
        self.bindings.append(Binding(weight, "param", slots, dim=1))
        self._set_axis(node, len(out) - 1)
        return slots

    def _grouped(self, node: fx.Node, name: str, m: nn.Module, x: np.ndarray) -> np.ndarray:
        """A grouped convolution: every group must keep the same width, so the k-th input
        channel of every group goes together (one weight column), and so does the k-th
        filter of every group (one row per group); the group count stays. Exact."""
        out = self.uf.new(m.out_channels)
        size_in, size_out = m.in_channels // m.groups, m.out_channels // m.groups
        for slots, size in ((x, size_in), (out, size_out)):
            for k in range(size):
                for g in range(1, m.groups):
                    self.uf.union(int(slots[k]), int(slots[g * size + k]))
        self.bindings.append(Binding(name, "gin", x))
        self.bindings.append(Binding(name, "out", out))
        return out

    def _flatten(
        self, node: fx.Node, x: np.ndarray, start: int, end: int = -1
    ) -> np.ndarray | None:
        shape = self._shape(node.args[0])
        if shape is None:
            return self._unknown(node, "flatten", [x])
        start = start % len(shape)
        end = end % len(shape)
        axis = self.ax(node.args[0])
        if start == 1 and end == len(shape) - 1 and axis == 1:
            block = int(np.prod(shape[2:], dtype=np.int64)) if len(shape) > 2 else 1
            return np.repeat(x, block)
        if axis < start:
            return x
        if axis > end:
            self._set_axis(node, axis - (end - start))
            return x
        if start == end:
            return x
        return self._unknown(node, "flatten", [x])

    def _reshape(self, node: fx.Node, x: np.ndarray) -> np.ndarray | None:
        """A view or reshape that keeps the channel axis whole (``flatten(2)``, adding or
        removing axes of length 1), or flattens channels and everything after them."""
        before, after = self._shape(node.args[0]), self._shape(node)
        axis = self.ax(node.args[0])
        if before and after and len(after) == 2 and after[0] == before[0] and axis == 1:
            return self._flatten(node, x, 1)
        if before and after:
            lead = int(np.prod(before[:axis], dtype=np.int64))
            for k in range(len(after)):
                if int(np.prod(after[:k], dtype=np.int64)) == lead and after[k] == before[axis]:
                    rest_b = int(np.prod(before[axis + 1 :], dtype=np.int64))
                    rest_a = int(np.prod(after[k + 1 :], dtype=np.int64))
                    if rest_a == rest_b:
                        self._set_axis(node, k)
                        return x
        return self._unknown(node, str(node.target), [x])

    def _permute(self, node: fx.Node, x: np.ndarray) -> np.ndarray | None:
        """``permute``/``transpose``: the channels move to another axis (channel-last code)."""
        shape = self._shape(node.args[0])
        if shape is None:
            return self._unknown(node, str(node.target), [x])
        rank, axis = len(shape), self.ax(node.args[0])
        rest = list(node.args[1:])
        if getattr(node.target, "__name__", node.target) == "transpose":
            a, b = (int(d) % rank for d in rest[:2])
            new = b if axis == a else a if axis == b else axis
        else:
            dims = rest[0] if len(rest) == 1 and isinstance(rest[0], (list, tuple)) else rest
            dims = [int(d) % rank for d in dims]
            new = dims.index(axis)
        self._set_axis(node, new)
        return x

    def _layer_norm(self, node: fx.Node, x: Any) -> np.ndarray | None:
        """``layer_norm`` over the channels alone: its weight and bias go with them. Its
        statistics span the channels, so removing some changes the others (recorded in
        ``inexact``), as in every structured pruning of LayerNorm models."""
        shape = self._shape(node.args[0]) if node.args else None
        normalized = node.args[1] if len(node.args) > 1 else node.kwargs.get("normalized_shape")
        if (
            not isinstance(x, np.ndarray)
            or shape is None
            or self.ax(node.args[0]) != len(shape) - 1
            or len(tuple(normalized or ())) != 1
        ):
            params = [self._lookup(a) for a in node.args[2:4]]
            return self._unknown(node, "layer_norm", [x, *params])
        for a in [*node.args[2:4], node.kwargs.get("weight"), node.kwargs.get("bias")]:
            v = self._lookup(a)
            if isinstance(v, np.ndarray) and len(v) == len(x):
                for s, t in zip(x.tolist(), v.tolist(), strict=True):
                    self.uf.union(s, t)
        self.inexact.append(node.name)
        return x

    def _function(self, node: fx.Node, args: list[Any]) -> np.ndarray | None:
        target = node.target
        x = args[0] if args else None
        kwargs = node.kwargs
        if (node.op == "call_method" and target in ("size", "dim", "numel")) or target is getattr:
            return None
        if node.op == "call_method" and target in ("expand", "expand_as", "repeat"):
            before, after = self._shape(node.args[0]), self._shape(node)
            axis = self.ax(node.args[0])
            if (
                isinstance(x, np.ndarray)
                and before
                and after
                and len(before) == len(after)
                and before[axis] == after[axis]
            ):
                return x
            return self._unknown(node, str(target), [x])
        if target is operator.getitem and isinstance(x, list):  # one part of a chunk/split
            index = node.args[1]
            return x[index] if isinstance(index, int) and -len(x) <= index < len(x) else None
        if target is operator.getitem and isinstance(x, np.ndarray):
            return self._index(node, x)
        moves = target in (torch.permute, torch.transpose) or (
            node.op == "call_method" and target in ("permute", "transpose")
        )
        if moves and isinstance(x, np.ndarray):
            return self._permute(node, x)
        if target is F.embedding:
            weight = node.args[1] if len(node.args) > 1 else kwargs.get("weight")
            if isinstance(weight, fx.Node) and weight.op == "get_attr" and self._shape(weight):
                for b in self.bindings:  # the table is bound here, not as a learned tensor
                    if b.module == str(weight.target) and b.kind == "param" and b.dim != 1:
                        self.locked.update(b.slots.tolist())
                return self._embedding(node, str(weight.target), self._shape(weight))
            return self._fresh(node, lock=True)
        if target is F.pad and isinstance(x, np.ndarray):  # spatial padding keeps the channels
            shape = self._shape(node.args[0])
            pads = node.args[1] if len(node.args) > 1 else kwargs.get("pad", ())
            if shape and self.ax(node.args[0]) < len(shape) - len(pads) // 2:
                return x
            return self._unknown(node, "pad", [x])
        if target is F.layer_norm:
            return self._layer_norm(node, x)
        if target in (torch.chunk, torch.split) or (
            node.op == "call_method" and target in ("chunk", "split")
        ):
            return self._split(node, x)
        if target in PASS_FUNCTIONS or (node.op == "call_method" and target in PASS_METHODS):
            return x if isinstance(x, np.ndarray) else self._fresh(node, lock=True)
        if target in ADD_LIKE or (node.op == "call_method" and target in ADD_METHODS):
            return self._elementwise(node, target, args)
        if target in (torch.cat, torch.concat) or (node.op == "call_method" and target == "cat"):
            return self._cat(node)
        if target in (torch.flatten,) or (node.op == "call_method" and target == "flatten"):
            start = node.args[1] if len(node.args) > 1 else kwargs.get("start_dim", 0)
            end = node.args[2] if len(node.args) > 2 else kwargs.get("end_dim", -1)
            if isinstance(x, np.ndarray):
                return self._flatten(node, x, start, end)
        if (
            (node.op == "call_method" and target in ("view", "reshape", "unsqueeze", "squeeze"))
            or target in (torch.reshape, torch.unsqueeze, torch.squeeze)
        ) and isinstance(x, np.ndarray):
            return self._reshape(node, x)
        if target in (torch.mean, torch.amax, torch.sum) or (
            node.op == "call_method" and target in ("mean", "amax", "sum")
        ):
            dims = node.args[1] if len(node.args) > 1 else kwargs.get("dim")
            dims = (dims,) if isinstance(dims, int) else tuple(dims or ())
            shape = self._shape(node.args[0]) if node.args else None
            if isinstance(x, np.ndarray) and shape and dims:
                rank, axis = len(shape), self.ax(node.args[0])
                dims = tuple(int(d) % rank for d in dims)
                keep = node.args[2] if len(node.args) > 2 else kwargs.get("keepdim", False)
                if axis not in dims and 0 not in dims:
                    if not keep:
                        self._set_axis(node, axis - sum(d < axis for d in dims))
                    return x
        if not any(isinstance(a, np.ndarray) for a in args) and not any(
            isinstance(self._lookup(v), np.ndarray) for v in kwargs.values()
        ):
            return None if self._shape(node) is None else self._fresh(node, lock=True)
        return self._unknown(node, f"operation {getattr(target, '__name__', target)}", args)

    def _cat(self, node: fx.Node) -> np.ndarray | None:
        """Concatenation along the channels lines the parts up (DenseNet); along another axis
        (a class token before the patches) it couples the parts' channels index by index."""
        parts = node.args[0] if node.args else node.kwargs.get("tensors")
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        values = [self._lookup(p) for p in parts]
        shape = self._shape(node)
        if shape is None or not all(isinstance(v, np.ndarray) for v in values):
            return self._unknown(node, "concatenation", values)
        axes = {self.ax(p) for p in parts}
        dim = int(dim) % len(shape)
        if len(axes) != 1:
            return self._unknown(node, "concatenation", values)
        axis = axes.pop()
        self._set_axis(node, axis)
        if dim == axis:
            return np.concatenate(values)
        if any(len(v) != len(values[0]) for v in values):
            return self._unknown(node, "concatenation", values)
        for v in values[1:]:
            for a, b in zip(values[0].tolist(), v.tolist(), strict=True):
                self.uf.union(a, b)
        return values[0]

    def _index(self, node: fx.Node, x: np.ndarray) -> np.ndarray | None:
        """``x[:, 0]`` and the like: integers and full slices on other axes than the
        channels' (a class token taken from the sequence)."""
        index = node.args[1]
        index = index if isinstance(index, tuple) else (index,)
        shape = self._shape(node.args[0])
        axis = self.ax(node.args[0])
        if shape is None or any(i is Ellipsis or isinstance(i, fx.Node) for i in index):
            return self._unknown(node, "indexing", [x])
        pos, new_axis = 0, axis
        for i in index:
            if i is None:
                if pos <= axis:
                    new_axis += 1
                continue
            if pos == axis and i != slice(None):
                return self._unknown(node, "indexing of the channels", [x])
            if isinstance(i, int) and pos < axis:
                new_axis -= 1
            elif not isinstance(i, (int, slice)):
                return self._unknown(node, "indexing", [x])
            pos += 1
        self._set_axis(node, new_axis)
        return x

    def _split(self, node: fx.Node, x: Any) -> Any:
        """``chunk``/``split`` along the channels: one slot array per part (GLU-style gates)."""
        shape = self._shape(node.args[0]) if node.args else None
        dim = node.args[2] if len(node.args) > 2 else node.kwargs.get("dim", 0)
        how = (
            node.args[1]
            if len(node.args) > 1
            else node.kwargs.get("chunks", node.kwargs.get("split_size_or_sections"))
        )
        if (
            not isinstance(x, np.ndarray)
            or shape is None
            or int(dim) % len(shape) != self.ax(node.args[0])
        ):
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
        out_shape = self._shape(node)
        for a in node.args:  # a learned tensor (a position embedding) meets the channels
            shape = self._shape(a) if isinstance(a, fx.Node) and a.op == "get_attr" else None
            if (
                shape is None
                or int(np.prod(shape, dtype=np.int64)) <= 1
                or isinstance(self._lookup(a), np.ndarray)
            ):
                continue
            axes = {
                self.ax(b) + len(out_shape or ()) - len(self._shape(b) or ()) for _, b in operands
            }
            dim = axes.pop() - len(out_shape or ()) + len(shape) if len(axes) == 1 else -1
            if (
                out_shape is None
                or not 0 <= dim < len(shape)
                or shape[dim] != out_shape[dim - len(shape)]
            ):
                values = [v for v, _ in operands]
                return self._unknown(node, f"{node.name} with parameter {a.target}", values)
            slots = self.uf.new(shape[dim])
            self.bindings.append(Binding(str(a.target), "param", slots, dim=dim))
            self._set_axis(a, dim)
            operands.append((slots, a))
        if not operands:
            return self._fresh(node, lock=True) if self._shape(node) else None
        name = f"{getattr(target, '__name__', target)}"
        values = [v for v, _ in operands]
        if out_shape is None or len(out_shape) < 2:
            return self._unknown(node, name, values)
        aligned = []
        for _, a in operands:  # broadcasting aligns shapes from the right
            shape = self._shape(a) if isinstance(a, fx.Node) else None
            if shape is None or len(shape) > len(out_shape):
                return self._unknown(node, name, values)
            aligned.append(self.ax(a) + len(out_shape) - len(shape))
        free = [x for (v, _), x in zip(operands, aligned, strict=True) if not self._all_locked(v)]
        common = free[0] if free else aligned[0]
        for k, ((v, a), x) in enumerate(zip(list(operands), aligned, strict=True)):
            if x != common and self._all_locked(v):  # its axis is lost; it is locked anyway
                d = common - len(out_shape) + len(self._shape(a))
                if d >= 0:
                    slots = self.uf.new(self._shape(a)[d])
                    self.locked.update(slots.tolist())
                    operands[k] = (slots, a)
                    aligned[k] = common
                    values[k] = slots
        axes = set(aligned)
        if len(axes) != 1:
            return self._unknown(node, f"{name} across channel axes", values)
        axis = axes.pop()
        self._set_axis(node, axis)
        full = [v for v, _ in operands if len(v) == out_shape[axis]]
        if not full:
            return self._unknown(node, name, values)
        first = full[0]
        for v in values:
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
    def summary(self) -> list[str]:
        """The warnings, one line per kind of operation not understood (with its count and
        first places), instead of one per place: a transformer's attention repeats the same
        few in every block."""
        import re

        grouped: dict[str, list[str]] = {}
        for w in self.warnings:
            m = re.match(r"^(.*?) \(([^()]*)\) (is not understood.*)$", w)
            if m is None:
                grouped.setdefault(w, [])
                continue
            what = re.sub(r"_\d+$", "", m.group(1))
            grouped.setdefault(f"{what} {m.group(3)}", []).append(m.group(2))
        out = []
        for text, places in grouped.items():
            if len(places) <= 1:
                out.append(
                    text if not places else text.replace(" is not", f" ({places[0]}) is not", 1)
                )
            else:
                shown = ", ".join(places[:3]) + (", ..." if len(places) > 3 else "")
                out.append(text.replace(" is not", f" ({len(places)} places: {shown}) is not", 1))
        return out

    def classes(self) -> dict[int, list[int]]:
        """Equivalence classes of slots: root -> members."""
        out: dict[int, list[int]] = defaultdict(list)
        for s in range(len(self.uf.parent)):
            out[self.uf.find(s)].append(s)
        return dict(out)

    def locked_roots(self) -> set[int]:
        roots = self.root_array()
        return (
            set(roots[np.fromiter(self.locked, dtype=np.int64)].tolist()) if self.locked else set()
        )

    def root_array(self) -> np.ndarray:
        """The class root of every slot, as one array (built once: the graph is final)."""
        cached = getattr(self, "_roots", None)
        if cached is not None and len(cached) == len(self.uf.parent):
            return cached
        parent = np.asarray(self.uf.parent, dtype=np.int64)
        while True:  # pointer jumping: every slot ends at its root
            nxt = parent[parent]
            if np.array_equal(nxt, parent):
                break
            parent = nxt
        self._roots = parent
        return parent

    def members(self, root: int) -> list[tuple[Binding, int]]:
        """Every ``(binding, index)`` whose slot belongs to class ``root``."""
        found = []
        every = self.root_array()
        for b in self.bindings:
            roots = every[b.slots]
            for i in np.flatnonzero(roots == root):
                found.append((b, int(i)))
        return found
