"""A ``torch.export`` trace, written back in terms of the user's own modules.

``torch.export`` (non-strict) traces code that ``torch.fx`` cannot: Python control flow on
shapes, iteration, library-specific dispatch (Hugging Face models). Its graph is of ATen
operations on lifted parameters. This module rewrites that graph into the vocabulary the
channel graph reads: each ``aten.conv2d``, ``aten.linear``, ``aten.batch_norm`` or
``aten.group_norm`` becomes a call of the user's module that owns the weight (found from the
node's module stack, else from the weight's qualified name), each parameter a ``get_attr`` of
its qualified name, and the other operations their ``torch`` equivalents. Shapes come from the
trace. Operations with no equivalent stay as they are, and the channel graph locks what they
touch, naming them.
"""

from __future__ import annotations

import operator
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

aten = torch.ops.aten

_PASS = {
    aten.relu.default, aten.relu_.default, aten.gelu.default, aten.gelu_.default,
    aten.silu.default, aten.silu_.default, aten.sigmoid.default, aten.sigmoid_.default,
    aten.tanh.default, aten.hardswish.default, aten.hardswish_.default,
    aten.hardsigmoid.default, aten.hardsigmoid_.default, aten.hardtanh.default,
    aten.hardtanh_.default, aten.elu.default, aten.leaky_relu.default, aten.mish.default,
    aten.dropout.default, aten.dropout_.default, aten.feature_dropout.default,
    aten.feature_dropout_.default, aten.alpha_dropout.default, aten.clone.default,
    aten.contiguous.default, aten.alias.default,
    aten.detach.default, aten._to_copy.default, aten.to.dtype, aten.clamp.default,
    aten.clamp_min.default, aten.exp.default, aten.erf.default, aten.neg.default,
    aten.max_pool2d.default, aten.avg_pool2d.default, aten.adaptive_avg_pool2d.default,
    aten.adaptive_avg_pool1d.default, aten.max_pool1d.default, aten.avg_pool1d.default,
    aten.softplus.default, aten.relu6.default if hasattr(aten, "relu6") else aten.relu.default,
    aten.lift_fresh_copy.default, aten.type_as.default, aten.elu_.default,
    aten.leaky_relu_.default, aten.mish_.default, aten.celu.default, aten.selu.default,
    aten.clamp_.default, aten.clamp_min_.default,
}  # fmt: skip
_BINARY = {
    aten.add.Tensor: operator.add, aten.add_.Tensor: operator.add, aten.add.Scalar: operator.add,
    aten.sub.Tensor: operator.sub, aten.sub.Scalar: operator.sub, aten.rsub.Scalar: operator.sub,
    aten.mul.Tensor: operator.mul, aten.mul_.Tensor: operator.mul, aten.mul.Scalar: operator.mul,
    aten.div.Tensor: operator.truediv, aten.div_.Tensor: operator.truediv,
    aten.div.Scalar: operator.truediv,
}  # fmt: skip
_LAYERS = {
    aten.conv1d.default: (nn.Conv1d,),
    aten.conv2d.default: (nn.Conv2d,),
    aten.convolution.default: (nn.Conv1d, nn.Conv2d),
    aten.linear.default: (nn.Linear,),
    aten.batch_norm.default: (nn.modules.batchnorm._BatchNorm,),
    aten._native_batch_norm_legit_no_training.default: (nn.modules.batchnorm._BatchNorm,),
    aten.group_norm.default: (nn.GroupNorm,),
}


def _meta(val: Any) -> SimpleNamespace | None:
    shape = getattr(val, "shape", None)
    return SimpleNamespace(shape=tuple(int(s) for s in shape)) if shape is not None else None


def _owner(
    model: nn.Module, node: fx.Node, types: tuple[type, ...], fqn: dict[str, str]
) -> str | None:
    """The qualified name of the user's module of ``types`` that this operation is part of."""
    stack = node.meta.get("nn_module_stack") or {}
    for path, _ in reversed(list(stack.values())):
        try:
            if isinstance(model.get_submodule(path), types):
                return path
        except AttributeError:
            continue
    weight = node.args[1] if len(node.args) > 1 else None
    if isinstance(weight, fx.Node) and weight.name in fqn:
        owner = fqn[weight.name].rpartition(".")[0]
        try:
            if isinstance(model.get_submodule(owner), types):
                return owner
        except AttributeError:
            return None
    return None


def export_graph(model: nn.Module, inputs: tuple[Any, ...]) -> fx.GraphModule:
    """``model`` traced by ``torch.export`` (non-strict) and rewritten onto its own modules.

    Raises:
        Exception: whatever ``torch.export`` raises for code it cannot trace.
    """
    was = model.training
    model.eval()
    try:
        ep = torch.export.export(model, inputs, strict=False)
    finally:
        model.train(was)
    sig = ep.graph_signature
    fqn = {**sig.inputs_to_parameters, **sig.inputs_to_buffers}
    graph = fx.Graph()
    env: dict[str, Any] = {}
    attrs: dict[str, fx.Node] = {}
    vals: dict[str, Any] = {n.name: n.meta.get("val") for n in ep.graph.nodes}

    def new(op: str, target: Any, args: tuple, src: fx.Node, kwargs: dict | None = None) -> fx.Node:
        n = graph.create_node(op, target, args, kwargs or {})
        meta = _meta(src.meta.get("val"))
        if meta is not None:
            n.meta["tensor_meta"] = meta
        return n

    def arg(a: Any) -> Any:
        if isinstance(a, fx.Node):
            if a.name in env:
                return env[a.name]
            if a.name in fqn:  # a parameter or buffer, read as itself
                if a.name not in attrs:
                    attrs[a.name] = new("get_attr", fqn[a.name], (), a)
                return attrs[a.name]
            return None
        if isinstance(a, (list, tuple)):
            return type(a)(arg(x) for x in a)
        return a

    for node in ep.graph.nodes:
        if node.op == "placeholder":
            if node.name not in fqn:
                env[node.name] = new("placeholder", node.name, (), node)
            continue
        if node.op == "output":
            graph.output(arg(node.args[0]))
            continue
        if node.op != "call_function":
            continue
        t = node.target
        args = node.args
        if t in _LAYERS:
            owner = _owner(model, node, _LAYERS[t], fqn)
            if owner is not None:
                env[node.name] = new("call_module", owner, (arg(args[0]),), node)
                continue
        if (
            t is operator.getitem
            and isinstance(args[0], fx.Node)
            and args[0].target in (aten._native_batch_norm_legit_no_training.default,)
        ):
            if args[1] == 0:
                env[node.name] = env.get(args[0].name)
            continue
        if t in _PASS:
            env[node.name] = new("call_function", torch.relu, (arg(args[0]),), node)
        elif t in _BINARY:
            env[node.name] = new("call_function", _BINARY[t], tuple(arg(a) for a in args[:2]), node)
        elif t is aten.embedding.default:
            env[node.name] = new("call_function", F.embedding, (arg(args[1]), arg(args[0])), node)
        elif t is aten.layer_norm.default:
            full = [*args, None, None, None][:4]
            env[node.name] = new(
                "call_function", F.layer_norm, (arg(full[0]), full[1], arg(full[2]), arg(full[3])),
                node,
            )  # fmt: skip
        elif t in (aten.mean.dim, aten.sum.dim_IntList, aten.amax.default):
            fn = {aten.mean.dim: torch.mean, aten.sum.dim_IntList: torch.sum}.get(t, torch.amax)
            keep = args[2] if len(args) > 2 else node.kwargs.get("keepdim", False)
            env[node.name] = new("call_function", fn, (arg(args[0]), list(args[1]), keep), node)
        elif t is aten.cat.default:
            env[node.name] = new(
                "call_function", torch.cat, (arg(args[0]), args[1] if len(args) > 1 else 0), node
            )
        elif t is aten.flatten.using_ints:
            env[node.name] = new("call_function", torch.flatten, (arg(args[0]), *args[1:]), node)
        elif t in (aten.view.default, aten.reshape.default, aten._unsafe_view.default,
                   aten.unsqueeze.default, aten.squeeze.dim, aten.squeeze.dims):  # fmt: skip
            env[node.name] = new("call_method", "reshape", (arg(args[0]),), node)
        elif t is aten.permute.default:
            env[node.name] = new("call_method", "permute", (arg(args[0]), list(args[1])), node)
        elif t is aten.transpose.int:
            env[node.name] = new("call_method", "transpose", (arg(args[0]), *args[1:3]), node)
        elif t is aten.t.default:
            env[node.name] = new("call_method", "transpose", (arg(args[0]), 0, 1), node)
        elif t is aten.expand.default:
            env[node.name] = new("call_method", "expand", (arg(args[0]), list(args[1])), node)
        elif t in (aten.split.Tensor, aten.split_with_sizes.default, aten.chunk.default):
            fn = torch.chunk if t is aten.chunk.default else torch.split
            dim = args[2] if len(args) > 2 else node.kwargs.get("dim", 0)
            env[node.name] = new("call_function", fn, (arg(args[0]), args[1], dim), node)
        elif t is operator.getitem:
            env[node.name] = new("call_function", operator.getitem, (arg(args[0]), args[1]), node)
        elif t is aten.select.int:
            index = (*[slice(None)] * int(args[1]), int(args[2]))
            env[node.name] = new("call_function", operator.getitem, (arg(args[0]), index), node)
        elif t is aten.slice.Tensor:
            dim = int(args[1]) if len(args) > 1 else 0
            whole = tuple(vals[node.name].shape) == tuple(vals[args[0].name].shape)
            part = slice(None) if whole else slice(*(args[2:5] if len(args) > 2 else ()))
            index = (*[slice(None)] * dim, part)
            env[node.name] = new("call_function", operator.getitem, (arg(args[0]), index), node)
        elif t in (aten.pad.default, aten.constant_pad_nd.default):
            env[node.name] = new("call_function", F.pad, (arg(args[0]), list(args[1])), node)
        elif t in (aten.sym_size.int, aten.size.default, aten.dim.default):
            continue  # sizes, not tensors
        else:  # kept as it is: the channel graph locks what it touches and names it
            env[node.name] = new(
                "call_function", t, tuple(arg(a) for a in args),
                node, {k: arg(v) for k, v in node.kwargs.items()},
            )  # fmt: skip
    return fx.GraphModule(model, graph, type(model).__name__)
