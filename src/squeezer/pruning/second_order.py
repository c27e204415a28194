"""Second-order unstructured pruning: Optimal Brain Damage and layer-wise Optimal Brain Surgeon.

**OBD** (LeCun, Denker & Solla 1990) removes the weights of least saliency
``s_q = h_qq w_q^2 / 2``, where ``h_qq`` is the diagonal of the loss Hessian. As in the paper,
the Hessian is the Gauss-Newton one (second derivatives of the network ignored): for a softmax
cross-entropy it is exact per example as ``sum_k p_k J_kq^2 - (sum_k p_k J_kq)^2`` with ``J``
the Jacobian of the logits (``hessian="ggn"``, one Jacobian per example), or estimated from the
squared gradients at the true labels (``hessian="fisher"``, the empirical Fisher, one gradient
per example). OBD only chooses; the kept weights are not changed.

**OBS** (Hassibi & Stork 1993), layer-wise as in Dong, Chen & Pan 2017 ("L-OBS"): each layer's
error is the squared change of its outputs on sample inputs, whose Hessian ``H = 2 X X^T / N``
is the same for every output row. Weights are removed one at a time per row, each time the one
of least ``w_q^2 / (2 [H^-1]_qq)``, and the row's other weights absorb the removal by the
update ``-w_q / [H^-1]_qq * H^-1 e_q``; ``H^-1`` is then downdated exactly for the next removal
(the greedy of Frantar & Alistarh's Optimal Brain Compression). The layer's budget goes to the
rows by the losses each removal costs, so rows end up with different sparsities. Layers are
pruned in forward order, each from the inputs the already-pruned layers before it produce.

Both register a :class:`~squeezer.pruning.WeightMask`, as magnitude pruning does, so the zeros
hold through fine-tuning and ``.sqz`` files store them sparsely.

    sq.prune_(model, sq.pruning.OBD(sparsity=0.9), data=batches)
    sq.prune_(model, sq.pruning.OBS(sparsity=0.9), data=batches)
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from squeezer.config import check
from squeezer.core import (
    LayerSelection,
    PerLayerReport,
    conv_patches,
    current_weight,
    register_handler,
)
from squeezer.errors import ModelError
from squeezer.pruning.magnitude import require_plain_or_masked, set_mask


@dataclass(frozen=True)
class _SaliencyPruning(LayerSelection):
    """What every saliency-ordered pruning config shares: how much goes, and where from."""

    sparsity: float | None = None
    per_layer: dict[str, float] = field(default_factory=dict)
    samples: int = 1024

    default_types: ClassVar[tuple[str, ...]] = ("Linear", "Conv2d")
    needs_data: ClassVar[bool] = True

    def validate(self) -> None:
        super().validate()
        name = type(self).__name__
        check(self.sparsity is not None or bool(self.per_layer),
              f"{name}: give sparsity or per_layer")  # fmt: skip
        for layer, s in [("sparsity", self.sparsity), *self.per_layer.items()]:
            check(
                s is None or (isinstance(s, (int, float)) and 0 <= s < 1),
                f"{name}: sparsity of {layer} must be in [0, 1), got {s}",
            )
        check(isinstance(self.samples, int) and self.samples >= 1,
              f"{name}: samples must be an int >= 1")  # fmt: skip

    def target(self, name: str) -> float | None:
        return self.value_for(name, self.sparsity)


@dataclass(frozen=True)
class OBD(_SaliencyPruning):
    """Optimal Brain Damage: remove the weights of least ``h_qq w_q^2 / 2``.

    Attributes:
        sparsity: fraction of each selected layer's weights to remove (or of all of them,
            with ``scope="global"``), in [0, 1).
        per_layer: layer name or pattern -> sparsity.
        scope: ``"layer"`` (each layer reaches its sparsity) or ``"global"`` (one saliency
            threshold across the layers; saliencies are all in units of the loss).
        hessian: ``"ggn"`` (exact Gauss-Newton diagonal of the cross-entropy, one Jacobian of
            the logits per example) or ``"fisher"`` (squared per-example gradients at the true
            labels: one backward pass per example, for models with many classes).
        samples: training examples the diagonal is averaged over.
        layers, exclude, layer_types: which layers (default: every Linear and Conv2d).
    """

    scope: str = "layer"
    hessian: str = "ggn"

    def validate(self) -> None:
        super().validate()
        check(self.scope in ("layer", "global"), "OBD: scope must be 'layer' or 'global'")
        check(self.scope == "layer" or (self.sparsity is not None and not self.per_layer),
              "OBD: scope='global' needs one sparsity and no per_layer")  # fmt: skip
        check(self.hessian in ("ggn", "fisher"), "OBD: hessian must be 'ggn' or 'fisher'")


@dataclass(frozen=True)
class OBS(_SaliencyPruning):
    """Layer-wise Optimal Brain Surgeon: remove weights one at a time by ``w_q^2 / [H^-1]_qq``
    and update the rest of the row so the layer's outputs change least.

    Attributes:
        sparsity: fraction of each selected layer's weights to remove, in [0, 1).
        per_layer: layer name or pattern -> sparsity.
        damping: added to ``H``'s diagonal, as a fraction of its mean (``H`` is singular
            whenever inputs are correlated or dead).
        max_inputs: the largest row length (inputs of a Linear; in-channels per group x kernel
            area of a Conv2d) taken: the greedy keeps one ``d x d`` inverse per row being
            pruned, ``O(d^3)`` work per row. A larger layer is refused by name.
        samples: training examples ``H`` is computed from.
        layers, exclude, layer_types: which layers (default: every Linear and Conv2d).
    """

    damping: float = 0.01
    max_inputs: int = 4096

    def validate(self) -> None:
        super().validate()
        check(self.damping > 0, "OBS: damping must be > 0")
        check(self.max_inputs >= 1, "OBS: max_inputs must be >= 1")


# ------------------------------------------------------------------------------ shared
def _inputs(data: Iterable[Any] | None, samples: int, who: str) -> Iterator[tuple[Tensor, Any]]:
    """Batches ``(x, y)`` of ``data`` until ``samples`` examples have been given."""
    if data is None:
        raise ModelError(f"prune_: {who} reads data: pass data=[(inputs, targets), ...]")
    seen = 0
    for batch in data:
        if not isinstance(batch, (tuple, list)) or not batch:
            raise ModelError(f"prune_: {who}: each batch must be (inputs, targets)")
        x = batch[0]
        y = batch[1] if len(batch) > 1 else None
        take = min(samples - seen, len(x))
        yield x[:take], (None if y is None else y[:take])
        seen += take
        if seen >= samples:
            return
    if seen == 0:
        raise ModelError(f"prune_: {who}: the data gave no examples")


def _layers(model: nn.Module, config: _SaliencyPruning, who: str) -> list[tuple[str, nn.Module]]:
    layers = []
    for name, module in config.select(model):
        if config.target(name) is None:
            continue
        if not isinstance(module, (nn.Linear, nn.Conv2d)):
            raise ModelError(
                f"prune_: {who} takes Linear and Conv2d layers; {name} is "
                f"{type(module).__name__} (exclude it or narrow layer_types)"
            )
        require_plain_or_masked(module, name, f"prune_: {who}")
        layers.append((name, module))
    if not layers:
        raise ModelError("prune_: no layer of the given types and names to prune")
    return layers


def _device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _lowest(scores: Tensor, k: int) -> Tensor:
    """A mask keeping all but the ``k`` lowest scores (ties broken by position)."""
    keep = torch.ones(scores.numel(), dtype=torch.bool, device=scores.device)
    if k > 0:
        keep[scores.flatten().argsort(stable=True)[:k]] = False
    return keep.view_as(scores)


# ------------------------------------------------------------------------------- OBD
def hessian_diagonal(
    model: nn.Module,
    layers: list[tuple[str, nn.Module]],
    data: Iterable[Any] | None,
    *,
    samples: int = 1024,
    kind: str = "ggn",
    chunk: int | None = None,
) -> dict[str, Tensor]:
    """The diagonal of the loss Hessian for each layer's weight, averaged over examples.

    ``kind="ggn"``: the Gauss-Newton matrix of softmax cross-entropy, exact per example;
    ``kind="fisher"``: the empirical Fisher (squared gradients at the true labels). Both are
    computed with per-example derivatives (``torch.func``), so any model whose forward pass
    ``vmap`` can batch works; the model is read in eval mode (no dropout, BN statistics fixed).
    """
    from torch.func import functional_call, grad, jacrev, vmap

    # the names functional_call substitutes: the masked weight's stored original, if masked
    names = {}
    for layer_name, module in layers:
        prefix = f"{layer_name}." if layer_name else ""
        masked = hasattr(module, "parametrizations") and "weight" in module.parametrizations
        key = "parametrizations.weight.original" if masked else "weight"
        names[layer_name] = prefix + key
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = {k: v.detach() for k, v in model.named_buffers()}
    device = _device(model)
    chosen = {layer: params[key].detach() for layer, key in names.items()}
    total = {layer: torch.zeros_like(w) for layer, w in chosen.items()}
    size = sum(w.numel() for w in chosen.values())

    def logits(weights: dict[str, Tensor], x: Tensor) -> Tensor:
        swapped = {names[layer]: w for layer, w in weights.items()}
        out = functional_call(model, {**params, **buffers, **swapped}, (x.unsqueeze(0),))
        if not isinstance(out, Tensor) or out.dim() != 2:
            raise ModelError("prune_: OBD needs a model whose output is (batch, classes) logits")
        return out[0]

    def ggn(weights: dict[str, Tensor], x: Tensor) -> dict[str, Tensor]:
        z = logits(weights, x)
        p = torch.softmax(z.detach(), dim=0)
        jac = jacrev(logits)(weights, x)  # per layer: (classes, *weight shape)
        out = {}
        for layer, j in jac.items():
            pj = p.view(-1, *([1] * (j.dim() - 1)))
            out[layer] = (pj * j.square()).sum(0) - (pj * j).sum(0).square()
        return out

    def fisher(weights: dict[str, Tensor], x: Tensor, y: Tensor) -> dict[str, Tensor]:
        def loss(w: dict[str, Tensor]) -> Tensor:
            return F.cross_entropy(logits(w, x).unsqueeze(0), y.unsqueeze(0))

        return {k: g.square() for k, g in grad(loss)(weights).items()}

    was_training = model.training
    model.eval()
    n = 0
    try:
        bar = tqdm(_inputs(data, samples, "OBD"), desc="OBD: Hessian diagonal",
                   disable=not sys.stderr.isatty(), leave=False, unit="batch")  # fmt: skip
        for x, y in bar:
            x = x.to(device)
            if kind == "fisher" and y is None:
                raise ModelError("prune_: OBD with hessian='fisher' needs the targets")
            classes = 1 if kind == "fisher" else _classes(model, x[:1])
            step = chunk or max(1, min(len(x), int(4e7 // max(size * classes, 1))))
            for i in range(0, len(x), step):
                xs = x[i : i + step]
                if kind == "ggn":
                    parts = vmap(ggn, in_dims=(None, 0))(chosen, xs)
                else:
                    parts = vmap(fisher, in_dims=(None, 0, 0))(
                        chosen, xs, y[i : i + step].to(device)
                    )
                for layer, v in parts.items():
                    total[layer] += v.sum(0)
            n += len(x)
    finally:
        model.train(was_training)
    return {layer: t / max(n, 1) for layer, t in total.items()}


def _classes(model: nn.Module, x: Tensor) -> int:
    with torch.no_grad():
        out = model(x)
    if not isinstance(out, Tensor) or out.dim() != 2:
        raise ModelError("prune_: OBD needs a model whose output is (batch, classes) logits")
    return out.shape[1]


@register_handler("prune", OBD)
def prune_obd_(
    model: nn.Module, config: OBD, example_inputs: object = None, *, data: Any = None
) -> PerLayerReport:
    """Prune ``model`` in place by Optimal Brain Damage saliency (weights masked to zero).

    Args:
        model: a classifier returning logits.
        config: how much to remove, and where.
        example_inputs: not needed (the verb's common signature).
        data: batches of ``(inputs, targets)``; ``config.samples`` examples are read.

    Returns:
        Each pruned layer's sparsity, and the saliency removed (``totals["saliency"]``: the
        predicted rise of the training loss, ``sum h w^2 / 2`` over the removed weights).
    """
    layers = _layers(model, config, "OBD")
    h = hessian_diagonal(model, layers, data, samples=config.samples, kind=config.hessian)
    weights = {n: current_weight(m) for n, m in layers}
    saliency = {n: 0.5 * h[n].to(weights[n]) * weights[n].square() for n in weights}
    masks = {}
    if config.scope == "global":
        assert config.sparsity is not None
        flat = torch.cat([s.flatten() for s in saliency.values()])
        keep = _lowest(flat, round(config.sparsity * flat.numel()))
        start = 0
        for n, s in saliency.items():
            masks[n] = keep[start : start + s.numel()].view_as(s)
            start += s.numel()
    else:
        for n, s in saliency.items():
            masks[n] = _lowest(s, round((config.target(n) or 0.0) * s.numel()))
    report, removed = {}, 0.0
    for name, module in layers:
        removed += float(saliency[name][~masks[name]].sum())
        set_mask(module, masks[name])
        report[name] = 1.0 - float(masks[name].float().mean())
    kept = sum(int(m.sum()) for m in masks.values())
    total = sum(m.numel() for m in masks.values())
    return PerLayerReport(
        "optimal brain damage: sparsity", report, sparsity=1 - kept / total, saliency=removed
    )


# ------------------------------------------------------------------------------- OBS
def _rows_and_hessians(module: nn.Module, inputs: list[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """The layer's weight as rows ``(rows, d)``, the group each row reads (``(rows,)``) and the
    per-group ``sum x x^T`` over the sampled input vectors ``(groups, d, d)``, with the count."""
    w = current_weight(module)
    # scaled to a largest magnitude of 1 (OBS does not depend on the scale): products of
    # tiny activations would otherwise underflow before H is formed
    peak = max(float(t.abs().max()) for t in inputs)
    if not math.isfinite(peak):
        raise ModelError("prune_: OBS: a layer's inputs are not finite (NaN or inf)")
    if peak > 0:
        inputs = [t / peak for t in inputs]
    if isinstance(module, nn.Linear):
        x = torch.cat([t.reshape(-1, t.shape[-1]) for t in inputs]).double()
        return w.reshape(w.shape[0], -1), torch.zeros(w.shape[0], dtype=torch.long), (
            (x.T @ x).unsqueeze(0), x.shape[0])  # fmt: skip
    assert isinstance(module, nn.Conv2d)
    g = module.groups
    d = w[0].numel()
    hessian = torch.zeros(g, d, d, dtype=torch.float64, device=w.device)
    count = 0
    for t in inputs:
        cols = conv_patches(module, t).double()
        hessian += cols.transpose(1, 2) @ cols
        count += cols.shape[1]
    group_of_row = torch.arange(w.shape[0], device=w.device) // (w.shape[0] // g)
    return w.reshape(w.shape[0], -1), group_of_row, (hessian, count)


def obs_order(
    rows: Tensor, hinv: Tensor, group: Tensor, steps: int, *, chunk_bytes: float = 2.5e8
) -> tuple[Tensor, Tensor]:
    """Greedy OBS on every row: the order in which each row's weights go, and what each
    removal costs (``w_q^2 / (2 [H^-1]_qq)`` at that step, in the layer's squared output
    error), for the first ``steps`` removals of every row.

    Args:
        rows: ``(rows, d)`` weights.
        hinv: ``(groups, d, d)`` inverse Hessians; row ``i`` reads ``hinv[group[i]]``.
        group: ``(rows,)`` group of each row.
        steps: removals per row.
        chunk_bytes: memory for the inverses of the rows pruned together.

    Every row loses one weight per step, so the rows of a chunk always keep the same number
    of weights; the removed ones are dropped from the inverses whenever an eighth of them has
    gone, which makes the work about ``d^3 / 3`` per row instead of ``d^3``.
    """
    n, d = rows.shape
    order = torch.empty(n, steps, dtype=torch.long, device=rows.device)
    loss = torch.empty(n, steps, dtype=rows.dtype, device=rows.device)
    per_chunk = max(1, int(chunk_bytes // (d * d * rows.element_size())))
    for start in range(0, n, per_chunk):
        w = rows[start : start + per_chunk].clone()
        h = hinv[group[start : start + per_chunk]].to(rows.dtype)
        b = len(w)
        idx = torch.arange(b, device=w.device)
        cols = torch.arange(d, device=w.device).expand(b, d).clone()  # original positions
        gone = torch.zeros(b, d, dtype=torch.bool, device=w.device)
        since = 0
        for s in range(steps):
            width = w.shape[1]
            if since and since * 8 >= width:  # compact: drop the removed columns
                kept = (~gone).nonzero()[:, 1].view(b, width - since)
                w, cols = w.gather(1, kept), cols.gather(1, kept)
                h = h.gather(1, kept.unsqueeze(2).expand(b, width - since, width))
                h = h.gather(2, kept.unsqueeze(1).expand(b, width - since, width - since))
                gone = torch.zeros_like(w, dtype=torch.bool)
                since = 0
            diag = h.diagonal(dim1=1, dim2=2)
            score = w.square() / diag
            score[gone] = float("inf")
            q = score.argmin(1)
            hq = h[idx, :, q]  # (b, width): column q of each inverse
            dq = hq[idx, q]
            wq = w[idx, q]
            order[start + idx, s] = cols[idx, q]
            loss[start + idx, s] = 0.5 * wq.square() / dq
            w -= (wq / dq).unsqueeze(1) * hq
            w[idx, q] = 0.0
            gone[idx, q] = True
            h.baddbmm_(hq.unsqueeze(2), (hq / dq.unsqueeze(1)).unsqueeze(1), alpha=-1.0)
            h[idx, q, q] = 1.0  # its row and column are now zero: keep the diagonal finite
            since += 1
    return order, loss


def _quadratic(hessian: Tensor, group: Tensor, rows: Tensor) -> float:
    """``sum_i rows_i^T H_{group_i} rows_i``."""
    total = 0.0
    for g in range(hessian.shape[0]):
        r = rows[group == g]
        total += float(((r @ hessian[g]) * r).sum())
    return total


def _reconstruct(rows: Tensor, hessian: Tensor, group: Tensor, keep: Tensor) -> Tensor:
    """Each row's kept weights set to the exact least-squares optimum for its mask:
    ``w_K = H_KK^-1 (H w)_K``, the weights the OBS updates arrive at.

    One Cholesky solve per row, of the kept weights only (small at high sparsity). Not one
    batched solve: PyTorch parallelizes a batch over threads and MKL each factorization
    again, and the nested thread teams can spin for minutes.
    """
    out = torch.zeros_like(rows)
    hw = torch.einsum("gij,nj->ngi", hessian, rows)[torch.arange(len(rows)), group]
    for i in range(len(rows)):
        kept = keep[i].nonzero().flatten()
        if kept.numel() == 0:
            continue
        h = hessian[group[i]][kept][:, kept]
        factor, info = torch.linalg.cholesky_ex(h)
        if int(info) == 0:
            out[i, kept] = torch.cholesky_solve(hw[i, kept, None], factor)[:, 0]
        else:  # not positive definite in floating point: least squares instead
            out[i, kept] = torch.linalg.lstsq(h, hw[i, kept, None]).solution[:, 0]
    return out


@register_handler("prune", OBS)
def prune_obs_(
    model: nn.Module, config: OBS, example_inputs: object = None, *, data: Any = None
) -> PerLayerReport:
    """Prune ``model`` in place by layer-wise Optimal Brain Surgeon (weights masked to zero,
    the kept ones updated).

    Args:
        model: the network.
        config: how much of each layer to remove.
        example_inputs: not needed (the verb's common signature).
        data: batches of ``(inputs, targets)`` (targets unused); ``config.samples`` examples.

    Returns:
        Each pruned layer's sparsity and relative output error ``||dW X|| / ||W X||`` on the
        sampled inputs (``report["fc1"]``).
    """
    layers = _layers(model, config, "OBS")
    for name, module in layers:
        d = current_weight(module)[0].numel()
        if d > config.max_inputs:
            raise ModelError(
                f"prune_: OBS: {name} has rows of {d} weights, above max_inputs="
                f"{config.max_inputs} (each row keeps a {d}x{d} inverse Hessian); raise "
                "max_inputs or exclude the layer"
            )
    batches = [x for x, _ in _inputs(data, config.samples, "OBS")]
    device = _device(model)
    report = {}
    was_training = model.training
    model.eval()
    try:
        ordered = _forward_order(model, layers, batches[0][:1].to(device))
        bar = tqdm(ordered, desc="OBS", disable=not sys.stderr.isatty(), leave=False,
                   unit="layer")  # fmt: skip
        for name, module in bar:
            bar.set_postfix_str(name)
            captured: list[Tensor] = []  # later layers see the inputs pruned ones produce
            hook = module.register_forward_pre_hook(
                lambda m, args, into=captured: into.append(args[0].detach())
            )
            try:
                with torch.no_grad():
                    for x in batches:
                        model(x.to(device))
            finally:
                hook.remove()
            report[name] = _prune_layer(module, captured, config.target(name) or 0.0, config)
    finally:
        model.train(was_training)
    kept = sum(int(m.weight.count_nonzero()) for _, m in layers)
    total = sum(m.weight.numel() for _, m in layers)
    return PerLayerReport(
        "optimal brain surgeon (layer-wise): sparsity, relative output error",
        report,
        sparsity=1 - kept / total,
    )


def _forward_order(
    model: nn.Module, layers: list[tuple[str, nn.Module]], x: Tensor
) -> list[tuple[str, nn.Module]]:
    """``layers`` in the order the forward pass first calls them (not the order they were
    registered in, which a model's ``forward`` need not follow)."""
    called: list[int] = []
    hooks = [
        m.register_forward_pre_hook(lambda mod, args, i=i: called.append(i))
        for i, (_, m) in enumerate(layers)
    ]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    first = list(dict.fromkeys(called))
    return [layers[i] for i in first] + [p for i, p in enumerate(layers) if i not in first]


def _prune_layer(
    module: nn.Module, inputs: list[Tensor], sparsity: float, config: OBS
) -> dict[str, float]:
    rows, group, (hessian, count) = _rows_and_hessians(module, inputs)
    w = current_weight(module)
    n, d = rows.shape
    k = round(sparsity * rows.numel())
    if k == 0:
        return {"sparsity": 1.0 - float(w.count_nonzero()) / w.numel(), "error": 0.0}
    plain = hessian / count
    # OBS's choices and weights do not change when H is scaled: bring it to a unit mean
    # diagonal, so tiny activations cannot leave subnormal numbers that make LAPACK crawl
    unit = float(plain.diagonal(dim1=1, dim2=2).mean())
    if not math.isfinite(unit):
        raise ModelError("prune_: OBS: a layer's inputs are not finite (NaN or inf)")
    plain = plain / unit if unit > 1e-250 else torch.zeros_like(plain)
    plain = torch.where(plain.abs() < 1e-150, torch.zeros_like(plain), plain)
    scale = plain.diagonal(dim1=1, dim2=2).mean(1)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # dead inputs: H = damping I
    h = plain + config.damping * scale.view(-1, 1, 1) * torch.eye(
        d, dtype=plain.dtype, device=plain.device
    )
    r64 = rows.double()
    # rows prune unevenly: each may take up to twice the mean number of removals
    steps = min(d, 2 * -(-k // n))
    order, loss = obs_order(rows.float(), torch.linalg.inv(h).float(), group, steps)
    # the k cheapest removals layer-wide, each row's taken in its own order (a row's costs
    # made non-decreasing, so a later removal never goes before an earlier one)
    cost = loss.double().cummax(1).values
    taken = torch.zeros(cost.numel(), dtype=torch.bool, device=cost.device)
    taken[cost.flatten().argsort(stable=True)[:k]] = True
    keep = torch.ones(n, d, dtype=torch.bool, device=rows.device)
    keep.scatter_(1, order, ~taken.view_as(cost))
    new = _reconstruct(r64, h, group, keep)
    with torch.no_grad():
        masked = hasattr(module, "parametrizations") and "weight" in module.parametrizations
        original = module.parametrizations.weight.original if masked else module.weight
        original.copy_(new.view_as(w).to(original.dtype))
    mask = keep.view_as(w)
    set_mask(module, mask)
    error = _quadratic(plain, group, new - r64) / max(_quadratic(plain, group, r64), 1e-30)
    return {"sparsity": 1.0 - float(mask.sum()) / mask.numel(), "error": error**0.5}
