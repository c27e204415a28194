"""Early exits: classifiers at several depths, and inference that stops as soon as one is
confident (BranchyNet, Teerapittayanon et al. 2016; the conditional computation of the
surveys' dynamic networks).

:func:`early_exits` cuts a model (traced with ``torch.fx``) after the modules named in
``after`` and puts an exit head there (global average pooling and one Linear layer, built
from the shape of the tensor at that point). The result, :class:`EarlyExitNet`:

- in training mode returns the model's logits and keeps every exit's, which the
  :class:`ExitLoss` callback of :func:`squeezer.fit` adds to the loss (joint training, or the
  exits alone after :meth:`EarlyExitNet.freeze_backbone_`);
- in eval mode runs the model segment by segment; after each exit, the examples whose top
  softmax probability reaches ``threshold`` stop there, and only the others go on (every
  tensor still needed later is narrowed to their rows), so the saved work is real. The
  exit each example took is kept in :attr:`EarlyExitNet.last_exits`.

:func:`exit_costs` counts the FLOPs of reaching each exit, from which
:func:`expected_flops` gives the average cost of a dataset's examples.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from squeezer.errors import ConfigError, ModelError
from squeezer.train.callbacks import Callback, TrainState


class ExitHead(nn.Sequential):
    """Global average pooling (for feature maps), flatten, one Linear to the classes; with
    ``hidden``, first a 3x3 stride-2 convolution to ``hidden`` channels with BatchNorm and
    ReLU (a BranchyNet-style branch that can still learn features of its own)."""

    def __init__(
        self, channels: int, num_classes: int, spatial: bool = True, hidden: int | None = None
    ) -> None:
        layers: list[nn.Module] = []
        if spatial and hidden:
            layers += [nn.Conv2d(channels, hidden, 3, 2, 1, bias=False), nn.BatchNorm2d(hidden),
                       nn.ReLU(inplace=True)]  # fmt: skip
            channels = hidden
        if spatial:
            layers.append(nn.AdaptiveAvgPool2d(1))
        super().__init__(*layers, nn.Flatten(), nn.Linear(channels, num_classes))


class EarlyExitNet(nn.Module):
    """A model cut into segments with an exit head after each but the last (see the
    module). Build it with :func:`early_exits`.

    Attributes:
        threshold: the top softmax probability at which an example stops, in (0, 1].
        last_exits: for the last eval batch, the index of the exit each example took
            (``len(heads)``: the model's own output).
    """

    def __init__(self, graph_module: fx.GraphModule, cuts: list[str], heads: nn.ModuleList,
                 threshold: float = 0.9) -> None:  # fmt: skip
        super().__init__()
        if not 0 < threshold <= 1:
            raise ConfigError(f"early exits: threshold must be in (0, 1], got {threshold}")
        self.model = graph_module
        self.cuts = list(cuts)
        self.heads = heads
        self.threshold = threshold
        self.last_exits: Tensor | None = None
        self.exit_logits: list[Tensor] = []
        self.frozen = False
        self._costs: tuple[tuple[int, ...], list[int]] | None = None
        self._plan()

    def _plan(self) -> None:
        """The graph's nodes split at the cut nodes, and which values each later segment
        still needs (those, and only those, are narrowed to the remaining examples)."""
        nodes = list(self.model.graph.nodes)
        self._segments: list[list[fx.Node]] = [[]]
        for node in nodes:
            if node.op in ("placeholder", "output"):
                continue
            self._segments[-1].append(node)
            if node.name in self.cuts:
                self._segments.append([])
        self._output = next(n for n in nodes if n.op == "output")
        self._inputs = [n for n in nodes if n.op == "placeholder"]

    def _run(self, node: fx.Node, env: dict[str, Any]) -> Any:
        gm = self.model

        def load(a: Any) -> Any:
            return fx.node.map_arg(a, lambda n: env[n.name])

        args, kwargs = load(node.args), load(node.kwargs)
        if node.op == "call_module":
            return gm.get_submodule(str(node.target))(*args, **kwargs)
        if node.op == "call_function":
            return node.target(*args, **kwargs)  # type: ignore[operator]
        if node.op == "call_method":
            self_obj, *rest = args
            return getattr(self_obj, str(node.target))(*rest, **kwargs)
        if node.op == "get_attr":
            value: Any = gm
            for part in str(node.target).split("."):
                value = getattr(value, part)
            return value
        raise ModelError(f"early exits: cannot run graph node {node.op}")

    def freeze_backbone_(self, frozen: bool = True) -> EarlyExitNet:
        """Train the heads alone: the model's parameters stop learning and it stays in eval
        mode (BatchNorm statistics fixed) whatever ``train()`` is called with."""
        self.frozen = frozen
        for p in self.model.parameters():
            p.requires_grad_(not frozen)
        return self.train(self.training)

    def train(self, mode: bool = True) -> EarlyExitNet:
        super().train(mode)
        if getattr(self, "frozen", False):
            self.model.eval()
        return self

    def forward(self, x: Tensor) -> Tensor:
        env: dict[str, Any] = {self._inputs[0].name: x}
        if self.training:  # the model's logits; every exit's kept for ExitLoss
            exits = []
            for i, segment in enumerate(self._segments):
                for node in segment:
                    env[node.name] = self._run(node, env)
                if i < len(self.heads):
                    exits.append(self.heads[i](env[self.cuts[i]]))
            self.exit_logits = exits
            return fx.node.map_arg(self._output.args[0], lambda n: env[n.name])
        n = x.shape[0]
        remaining = torch.arange(n, device=x.device)
        result: Tensor | None = None
        exits = torch.full((n,), len(self.heads), dtype=torch.long, device=x.device)
        for i, segment in enumerate(self._segments):
            for node in segment:
                env[node.name] = self._run(node, env)
            if i == len(self.heads):
                break
            logits = self.heads[i](env[self.cuts[i]])
            if result is None:
                result = logits.new_zeros(n, logits.shape[1])
            confident = F.softmax(logits, 1).amax(1) >= self.threshold
            if confident.any():
                result[remaining[confident]] = logits[confident]
                exits[remaining[confident]] = i
                keep = ~confident
                remaining = remaining[keep]
                if remaining.numel() == 0:
                    self.last_exits = exits
                    return result
                env = {k: _narrow(v, keep) for k, v in env.items()}
        final = fx.node.map_arg(self._output.args[0], lambda node: env[node.name])
        if result is None:
            result = final.new_zeros(n, final.shape[1])
        result[remaining] = final
        self.last_exits = exits
        return result

    def forward_flops(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The outputs for ``x`` (in eval mode) and each example's FLOPs: the cost of
        reaching the exit it took (:func:`exit_costs`, counted once per input shape)."""
        shape = tuple(x.shape[1:])
        if self._costs is None or self._costs[0] != shape:
            self._costs = (shape, exit_costs(self, x[:1]))
        out = self(x)
        assert self.last_exits is not None
        table = torch.tensor(self._costs[1], dtype=torch.float64)
        return out, table[self.last_exits.cpu()]


def _narrow(value: Any, keep: Tensor) -> Any:
    """The rows of ``keep`` of a batch-first tensor (other values as they are)."""
    if isinstance(value, Tensor) and value.dim() > 0 and value.shape[0] == keep.shape[0]:
        return value[keep]
    return value


def early_exits(
    model: nn.Module, after: Sequence[str], example_inputs: Tensor, *,
    num_classes: int | None = None, threshold: float = 0.9, head_channels: int | None = None,
) -> EarlyExitNet:  # fmt: skip
    """``model`` with an exit head after each module named in ``after`` (in forward order).

    Args:
        model: a classifier ``torch.fx`` can trace (the zoo's are).
        after: module names; the exits read their outputs.
        example_inputs: one batch, to size the heads.
        num_classes: the heads' outputs (default: the model's).
        threshold: the confidence at which an example stops (eval mode).
        head_channels: give the heads a 3x3 stride-2 convolution to this many channels
            before the pooling (default: pooling and one Linear layer).

    Raises:
        ModelError: the model cannot be traced, or a name is not a module it calls.
    """

    class Tracer(fx.Tracer):  # the cut modules stay whole, so their outputs are nodes
        def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
            return qualname in after or super().is_leaf_module(m, qualname)

    try:
        gm = fx.GraphModule(model, Tracer().trace(model))
    except Exception as exc:  # tracing fails in many ways
        raise ModelError(f"early exits: torch.fx cannot trace the model ({exc})") from exc
    calls = {str(n.target): n for n in gm.graph.nodes if n.op == "call_module"}
    missing = [a for a in after if a not in calls]
    if missing:
        raise ModelError(
            f"early exits: {', '.join(missing)} is not a module the forward pass calls "
            f"(called: {', '.join(list(calls)[:12])}...)"
        )
    order = [str(n.target) for n in gm.graph.nodes if n.op == "call_module"]
    cuts = sorted(after, key=order.index)
    shapes: dict[str, torch.Size] = {}
    hooks = [model.get_submodule(a).register_forward_hook(
        lambda m, i, o, a=a: shapes.__setitem__(a, o.shape)) for a in cuts]  # fmt: skip
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(example_inputs)
    finally:
        model.train(was)
        for h in hooks:
            h.remove()
    classes = num_classes or out.shape[1]
    heads = nn.ModuleList(
        ExitHead(shapes[a][1], classes, spatial=len(shapes[a]) == 4, hidden=head_channels)
        for a in cuts
    )
    node_names = [calls[a].name for a in cuts]
    net = EarlyExitNet(gm, node_names, heads, threshold)
    net.input_shape = getattr(model, "input_shape", None)  # type: ignore[assignment]
    return net


class ExitLoss(Callback):
    """A :func:`squeezer.fit` callback adding every exit's weighted cross-entropy to the
    loss (BranchyNet's joint objective); with a frozen backbone the exits train alone.

    Args:
        net: the early-exit network being trained.
        weights: one per exit (default 1 each).
    """

    def __init__(self, net: EarlyExitNet, weights: Sequence[float] | None = None) -> None:
        self.net = net
        self.weights = list(weights) if weights is not None else [1.0] * len(net.heads)
        if len(self.weights) != len(net.heads):
            raise ConfigError(f"ExitLoss: {len(net.heads)} exits, {len(self.weights)} weights")

    def loss(self, state: TrainState, loss: Tensor) -> Tensor:
        for w, logits in zip(self.weights, self.net.exit_logits, strict=True):
            loss = loss + w * F.cross_entropy(logits, state.targets)
        return loss


def exit_costs(net: EarlyExitNet, example: Tensor) -> list[int]:
    """FLOPs of one example that leaves at each exit (the last: the full model), counting
    every head it evaluated on the way."""
    from squeezer.analysis import count_flops

    was = net.training
    try:
        return [_cost_to(net, example, i, count_flops) for i in range(len(net.heads) + 1)]
    finally:
        net.train(was)


def _cost_to(net: EarlyExitNet, example: Tensor, stop: int, count: Any) -> int:
    class Until(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: Tensor) -> Tensor:
            env: dict[str, Any] = {net._inputs[0].name: x}
            last = x
            for i, segment in enumerate(net._segments):
                for node in segment:
                    env[node.name] = net._run(node, env)
                if i < len(net.heads):
                    last = net.heads[i](env[net.cuts[i]])
                    if i == stop:
                        return last
            return fx.node.map_arg(net._output.args[0], lambda n: env[n.name])

    return int(count(Until().eval(), example)[0])


def expected_flops(costs: Sequence[int], exits: Tensor) -> float:
    """The mean FLOPs per example, given each example's exit (``last_exits``)."""
    table = torch.tensor(costs, dtype=torch.float64)
    return float(table[exits.cpu()].mean())
