"""Attention heads and MLP hidden units of transformer blocks, removed physically.

    sq.prune_(model, sq.pruning.HeadPruning(heads=0.5, mlp=0.5), example_inputs)
    sq.prune_(model, sq.pruning.HeadPruning(heads=0.25, importance="gradient"), x, data=batches)

A head is removed whole: its rows of the query, key and value projections and its columns of
the output projection go together, and the module's head count follows. An MLP hidden unit is
a row of the first projection (of the gate and the up projection, in a gated MLP) and a column
of the second. The blocks are found by their layout, not by class, so the model stays an
ordinary module of the user's class, running its own ``forward``:

- fused ``qkv`` and ``proj`` with ``num_heads`` (timm's ``Attention``);
- separate ``q_proj``/``k_proj``/``v_proj`` and ``o_proj``/``out_proj`` (Hugging Face ViT,
  CLIP, Llama-style), or ``query``/``key``/``value`` whose output projection is the sibling
  ``output.dense`` (BERT, MiniLM, RoBERTa);
- MLPs as ``fc1``/``fc2`` (timm, ViT), ``intermediate.dense``/``output.dense`` (BERT) or
  ``gate_proj``/``up_proj``/``down_proj``.

Importance (higher is kept):

- ``"l1"``: the mean absolute weight of the head's (unit's) rows and columns;
- ``"gradient"``: Michel et al. 2019, "Are Sixteen Heads Really Better than One?": a mask
  variable multiplies each head's output (each hidden unit) and the importance is the mean of
  ``|dL/dmask|`` over the data. With ``(inputs, targets)`` batches ``L`` is the cross-entropy
  of the model's logits; with inputs alone it is the squared norm of the model's output, a
  label-free proxy (the sensitivity of the representation to the head). As in the paper, the
  scores of each layer are normalized by their L2 norm before a global ranking.

Edits are recorded (the new projection sizes and head counts), so a saved file loads into a
freshly built instance of the user's class.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from squeezer.analysis.counting import as_tuple, count_flops, count_params
from squeezer.config import check
from squeezer.core import LayerSelection, Report, register_handler
from squeezer.core.arch import record, replacement
from squeezer.core.modules import resized, set_module
from squeezer.errors import ModelError, SurgeryError
from squeezer.pruning.channel import adopt_

IMPORTANCES = ("l1", "gradient")
_HEAD_COUNT = ("num_heads", "num_attention_heads", "n_heads", "n_head")
_HEAD_DIM = ("head_dim", "attention_head_size", "d_head", "head_size")
_WIDTH = ("attn_dim", "all_head_size", "inner_dim", "embed_dim_inner")


@dataclass(frozen=True)
class HeadPruning(LayerSelection):
    """Remove attention heads and MLP hidden units of transformer blocks.

    Attributes:
        heads: fraction of the heads removed (per layer, or of all, see ``scope``), in [0, 1).
        mlp: fraction of the MLP hidden units removed, in [0, 1).
        importance: ``"l1"`` (weights) or ``"gradient"`` (Michel et al. 2019; needs ``data``).
        scope: ``"layer"`` (every block loses the fraction) or ``"global"`` (one ranking of
            the normalized scores over the model; each block keeps ``min_heads``).
        min_heads: heads every attention block keeps.
        round_to: keep a multiple of this many MLP hidden units.
        layers, exclude: names or patterns of the attention and MLP blocks touched.
    """

    heads: float = 0.5
    mlp: float = 0.0
    importance: str = "l1"
    scope: str = "layer"
    min_heads: int = 1
    round_to: int = 1

    default_types: ClassVar[tuple[str, ...]] = ()

    def validate(self) -> None:
        super().validate()
        for name in ("heads", "mlp"):
            v = getattr(self, name)
            check(
                isinstance(v, int | float) and 0 <= v < 1, f"HeadPruning: {name} must be in [0, 1)"
            )
        check(
            self.importance in IMPORTANCES,
            f"HeadPruning: importance must be one of {', '.join(IMPORTANCES)}",
        )
        check(self.scope in ("layer", "global"), "HeadPruning: scope must be layer or global")
        check(
            isinstance(self.min_heads, int) and self.min_heads >= 1,
            "HeadPruning: min_heads must be >= 1",
        )
        check(
            isinstance(self.round_to, int) and self.round_to >= 1,
            "HeadPruning: round_to must be >= 1",
        )

    def selects(self, name: str, module: nn.Module | None = None) -> bool:
        from squeezer.core.modules import matches

        if self.layers and not matches(name, self.layers):
            return False
        return not matches(name, self.exclude)


# --------------------------------------------------------------------------- layouts
def _int_attr(m: nn.Module, names: tuple[str, ...]) -> tuple[str, int] | None:
    for n in names:
        v = getattr(m, n, None)
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            return n, v
    config = getattr(m, "config", None)
    for n in ("num_attention_heads", "num_heads", "n_head") if names is _HEAD_COUNT else ():
        v = getattr(config, n, None)
        if isinstance(v, int) and v > 0:
            return "", v
    return None


@dataclass
class Attention:
    """One attention block: where its heads lie in which projections."""

    name: str
    module: nn.Module
    heads: int
    head_dim: int
    inputs: list[tuple[str, int, int]]  # (linear name, row offset, width of one part)
    output: str  # linear whose columns are the heads' outputs

    def rows(self, keep: np.ndarray) -> dict[str, Tensor]:
        """Per input projection, the rows of the kept heads."""
        out: dict[str, list[int]] = {}
        for lin, offset, _ in self.inputs:
            idx = out.setdefault(lin, [])
            for h in np.flatnonzero(keep):
                start = offset + int(h) * self.head_dim
                idx.extend(range(start, start + self.head_dim))
        return {k: torch.tensor(sorted(v)) for k, v in out.items()}

    def columns(self, keep: np.ndarray) -> Tensor:
        return torch.tensor(
            [int(h) * self.head_dim + d for h in np.flatnonzero(keep) for d in range(self.head_dim)]
        )


@dataclass
class MLP:
    """One MLP block: the hidden units are rows of ``inputs`` and columns of ``output``."""

    name: str
    inputs: list[str]
    output: str
    norms: list[str] = field(default_factory=list)  # LayerNorms over the hidden units
    width: int = 0


def _linear(model: nn.Module, name: str) -> nn.Linear | None:
    try:
        m = model.get_submodule(name)
    except AttributeError:
        return None
    return m if isinstance(m, nn.Linear) else None


def _join(*parts: str) -> str:
    return ".".join(p for p in parts if p)


def find_attention(model: nn.Module) -> Iterator[Attention]:
    """Every attention block of ``model`` whose heads can be removed, by layout."""
    modules = dict(model.named_modules())
    for name, m in modules.items():
        count = _int_attr(m, _HEAD_COUNT)
        if count is None:
            continue
        heads = count[1]
        qkv, proj = _linear(model, _join(name, "qkv")), None
        for o in ("proj", "o_proj", "out_proj", "dense", "o"):
            proj = proj or _linear(model, _join(name, o))
            if proj is not None:
                out_name = _join(name, o)
                break
        if qkv is not None and proj is not None and qkv.out_features % 3 == 0:
            width = qkv.out_features // 3
            if width % heads == 0 and proj.in_features == width:
                d = width // heads
                yield Attention(
                    name, m, heads, d, [(_join(name, "qkv"), p * width, width) for p in range(3)],
                    out_name,
                )  # fmt: skip
            continue
        for q, k, v in (("q_proj", "k_proj", "v_proj"), ("query", "key", "value"), ("q", "k", "v")):
            lins = [_linear(model, _join(name, x)) for x in (q, k, v)]
            if any(lin is None for lin in lins):
                continue
            width = lins[0].out_features
            if any(lin.out_features != width for lin in lins) or width % heads:
                break  # grouped-query attention and the like: not handled
            out_name = None
            for o in ("o_proj", "out_proj", "o", "proj"):
                if _linear(model, _join(name, o)) is not None:
                    out_name = _join(name, o)
                    break
            if out_name is None:  # BERT: the sibling BertSelfOutput
                parent = name.rpartition(".")[0]
                sibling = _linear(model, _join(parent, "output", "dense"))
                if sibling is not None and sibling.in_features == width:
                    out_name = _join(parent, "output", "dense")
            if out_name is None or _linear(model, out_name).in_features != width:
                break
            d = width // heads
            yield Attention(
                name, m, heads, d, [(_join(name, x), 0, width) for x in (q, k, v)], out_name
            )
            break


def find_mlps(model: nn.Module) -> Iterator[MLP]:
    """Every MLP block of ``model`` whose hidden units can be removed, by layout."""
    for name, m in model.named_modules():
        layouts = [
            (["fc1"], "fc2", ["norm"]),
            (["gate_proj", "up_proj"], "down_proj", []),
            (["intermediate.dense"], "output.dense", []),
            (["c_fc"], "c_proj", []),
        ]
        for ins, out, norms in layouts:
            lins = [_linear(m, x) for x in ins]
            last = _linear(m, out)
            if any(x is None for x in lins) or last is None:
                continue
            width = lins[0].out_features
            if any(x.out_features != width for x in lins) or last.in_features != width:
                continue
            found = [
                _join(name, n) for n in norms
                if isinstance(getattr(m, n, None), nn.LayerNorm)
                and tuple(getattr(m, n).normalized_shape) == (width,)
            ]  # fmt: skip
            yield MLP(name, [_join(name, x) for x in ins], _join(name, out), found, width)
            break


# --------------------------------------------------------------------------- importance
def _l1_heads(model: nn.Module, a: Attention) -> np.ndarray:
    scores = np.zeros(a.heads)
    for h in range(a.heads):
        keep = np.zeros(a.heads, dtype=bool)
        keep[h] = True
        total = 0.0
        for lin, rows in a.rows(keep).items():
            total += float(model.get_submodule(lin).weight.detach()[rows].abs().mean())
        total += float(
            model.get_submodule(a.output).weight.detach()[:, a.columns(keep)].abs().mean()
        )
        scores[h] = total
    return scores


def _l1_units(model: nn.Module, p: MLP) -> np.ndarray:
    total = sum(model.get_submodule(n).weight.detach().abs().mean(1) for n in p.inputs)
    total = total + model.get_submodule(p.output).weight.detach().abs().mean(0)
    return total.numpy().astype(np.float64)


def _loss(out: Any, target: Tensor | None) -> Tensor:
    if not isinstance(out, Tensor):
        for key in ("logits", "last_hidden_state", "pooler_output"):
            value = getattr(out, key, None)
            if isinstance(value, Tensor):
                out = value
                break
        else:
            out = next(
                v for v in (out.values() if isinstance(out, dict) else out) if isinstance(v, Tensor)
            )
    if target is None:
        return out.float().pow(2).mean()
    return F.cross_entropy(out.reshape(-1, out.shape[-1]), target.reshape(-1))


def _gradient_scores(
    model: nn.Module,
    attention: list[Attention],
    mlps: list[MLP],
    batches: list[Any],
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Michel et al.'s importance: mean ``|dL/dmask|`` of a mask on each head (unit)."""
    masks_h = [torch.ones(a.heads, requires_grad=True) for a in attention]
    masks_u = [torch.ones(p.width, requires_grad=True) for p in mlps]
    sums_h = [torch.zeros(a.heads) for a in attention]
    sums_u = [torch.zeros(p.width) for p in mlps]
    handles = []

    def head_hook(mask: Tensor, d: int) -> Callable:
        def hook(_m: nn.Module, args: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
            x = args[0]
            shaped = x.reshape(*x.shape[:-1], -1, d) * mask.to(x.dtype)[:, None]
            return (shaped.reshape(x.shape), *args[1:])

        return hook

    def unit_hook(mask: Tensor) -> Callable:
        def hook(_m: nn.Module, args: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
            return (args[0] * mask.to(args[0].dtype), *args[1:])

        return hook

    for a, mask in zip(attention, masks_h, strict=True):
        handles.append(
            model.get_submodule(a.output).register_forward_pre_hook(head_hook(mask, a.head_dim))
        )
    for p, mask in zip(mlps, masks_u, strict=True):
        handles.append(model.get_submodule(p.output).register_forward_pre_hook(unit_hook(mask)))
    was = model.training
    model.eval()
    try:
        for batch in batches:
            if isinstance(batch, (tuple, list)) and len(batch) == 2:
                inputs, target = as_tuple(batch[0]), batch[1]  # (inputs, targets or None)
            else:
                inputs, target = as_tuple(batch), None
            loss = _loss(model(*inputs), target)
            grads = torch.autograd.grad(loss, [*masks_h, *masks_u], allow_unused=True)
            for s, g in zip([*sums_h, *sums_u], grads, strict=True):
                if g is not None:
                    s += g.abs()
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    n = max(len(batches), 1)
    return [(s / n).numpy().astype(np.float64) for s in sums_h], [
        (s / n).numpy().astype(np.float64) for s in sums_u
    ]


# --------------------------------------------------------------------------- planning
def _keep_masks(
    scores: list[np.ndarray], ratio: float, scope: str, floor: int, round_to: int = 1
) -> list[np.ndarray]:
    masks = []
    if scope == "global" and scores:
        normed = [s / (np.linalg.norm(s) or 1.0) for s in scores]
        flat = sorted((float(v), i, j) for i, s in enumerate(normed) for j, v in enumerate(s))
        budget = math.floor(ratio * len(flat) + 1e-9)
        keep = [np.ones(len(s), dtype=bool) for s in scores]
        for _, i, j in flat:
            if budget <= 0:
                break
            if keep[i].sum() > min(floor, len(keep[i])):
                keep[i][j] = False
                budget -= 1
        return keep
    for s in scores:
        n = len(s)
        k = max(min(floor, n), math.floor((1 - ratio) * n + 1e-9))  # at least ratio go
        if round_to > 1:
            k = min(n, max(round_to, math.ceil(k / round_to) * round_to))
        keep = np.zeros(n, dtype=bool)
        keep[np.argsort(-s, kind="stable")[:k]] = True
        masks.append(keep)
    return masks


def _resize_linear(model: nn.Module, name: str, rows: Tensor | None, cols: Tensor | None) -> dict:
    old = model.get_submodule(name)
    new = resized(old, cols, rows)
    new.train(old.training)
    set_module(model, name, new)
    return replacement(name, new)


def _apply_heads(model: nn.Module, a: Attention, keep: np.ndarray) -> list[dict]:
    records = []
    for lin, rows in a.rows(keep).items():
        records.append(_resize_linear(model, lin, rows, None))
    records.append(_resize_linear(model, a.output, None, a.columns(keep)))
    m = model.get_submodule(a.name)
    kept = int(keep.sum())
    attrs: dict[str, int] = {}
    count = _int_attr(m, _HEAD_COUNT)
    if count and count[0]:
        attrs[count[0]] = kept
    for w in _WIDTH:
        if isinstance(getattr(m, w, None), int) and getattr(m, w) == a.heads * a.head_dim:
            attrs[w] = kept * a.head_dim
    for k, v in attrs.items():
        setattr(m, k, v)
    norm = getattr(m, "norm", None)  # timm's scale_norm over the heads' outputs
    if isinstance(norm, nn.LayerNorm) and tuple(norm.normalized_shape) == (a.heads * a.head_dim,):
        new = resized(norm, keep_features=a.columns(keep))
        set_module(model, _join(a.name, "norm"), new)
        records.append(replacement(_join(a.name, "norm"), new))
    if attrs:
        records.append({"module": a.name, "type": "Attrs", "values": attrs})
    return records


def _apply_units(model: nn.Module, p: MLP, keep: np.ndarray) -> list[dict]:
    idx = torch.from_numpy(np.flatnonzero(keep))
    records = [_resize_linear(model, n, idx, None) for n in p.inputs]
    records.append(_resize_linear(model, p.output, None, idx))
    for n in p.norms:
        new = resized(model.get_submodule(n), keep_features=idx)
        set_module(model, n, new)
        records.append(replacement(n, new))
    return records


@dataclass
class HeadReport(Report):
    """What head pruning removed, per block, and the model's cost before and after."""

    importance: str
    attention: list[dict[str, Any]]
    mlps: list[dict[str, Any]]
    params_before: int
    params_after: int
    flops_before: int
    flops_after: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": "head_pruning",
            "importance": self.importance,
            "params_before": self.params_before,
            "params_after": self.params_after,
            "flops_before": self.flops_before,
            "flops_after": self.flops_after,
            "flops_reduction": self.flops_before / max(self.flops_after, 1),
            "attention": self.attention,
            "mlps": self.mlps,
        }

    def format(self) -> str:
        lines = [f"head pruning ({self.importance})", f"{'block':<48} {'kept':>14}"]
        for a in self.attention:
            lines.append(f"{a['name']:<48} {a['heads']:>6} -> {a['kept']:<3} heads")
        for p in self.mlps:
            lines.append(f"{p['name']:<48} {p['units']:>6} -> {p['kept']:<5} units")
        lines.append(
            f"params {self.params_before:,} -> {self.params_after:,} "
            f"({self.params_before / max(self.params_after, 1):.2f}x fewer), FLOPs "
            f"{self.flops_before:,} -> {self.flops_after:,} "
            f"({self.flops_before / max(self.flops_after, 1):.2f}x fewer)"
        )
        return "\n".join(lines)


def plan_heads(
    model: nn.Module, config: HeadPruning, data: Iterable[Any] | None = None
) -> tuple[list[tuple[Attention, np.ndarray]], list[tuple[MLP, np.ndarray]]]:
    """The blocks ``config`` touches and, per block, which heads (units) stay."""
    attention = [a for a in find_attention(model) if config.selects(a.name)] if config.heads else []
    mlps = [p for p in find_mlps(model) if config.selects(p.name)] if config.mlp else []
    if not attention and not mlps:
        raise ModelError(
            "HeadPruning found no attention or MLP block it knows in "
            f"{type(model).__name__} (see squeezer.pruning.heads for the layouts)"
        )
    if config.importance == "gradient":
        if data is None:
            raise ModelError("importance 'gradient' needs data= batches of inputs (and targets)")
        batches = list(data)
        sh, su = _gradient_scores(model, attention, mlps, batches)
    else:
        sh = [_l1_heads(model, a) for a in attention]
        su = [_l1_units(model, p) for p in mlps]
    kh = _keep_masks(sh, config.heads, config.scope, config.min_heads)
    ku = _keep_masks(su, config.mlp, config.scope, config.round_to, config.round_to)
    return list(zip(attention, kh, strict=True)), list(zip(mlps, ku, strict=True))


@register_handler("prune", HeadPruning)
def _prune_heads_(
    model: nn.Module,
    config: HeadPruning,
    example_inputs: Tensor | tuple[Tensor, ...] | None = None,
    *,
    data: Iterable[Any] | None = None,
) -> HeadReport:
    inputs = as_tuple(example_inputs) if example_inputs is not None else None
    heads, units = plan_heads(model, config, data)
    before = (count_params(model), count_flops(model, inputs)[0] if inputs else 0)
    pruned = copy.deepcopy(model)  # edited, checked, then adopted: a failure changes nothing
    records: list[dict] = []
    for a, keep in heads:
        if not keep.all():
            a = dataclasses.replace(a, module=pruned.get_submodule(a.name))
            records += _apply_heads(pruned, a, keep)
    for p, keep in units:
        if not keep.all():
            records += _apply_units(pruned, p, keep)
    if inputs is not None:
        pruned.eval()
        try:
            with torch.no_grad():
                out = pruned(*inputs)
        except RuntimeError as exc:
            raise SurgeryError(
                f"the model does not run with heads removed ({str(exc).splitlines()[0]}); its "
                "forward may read a head count squeezer does not know; the model is unchanged"
            ) from None
        del out
        pruned.train(model.training)
    record(pruned, records)
    adopt_(model, pruned)
    return HeadReport(
        importance=config.importance,
        attention=[
            {
                "name": a.name,
                "heads": a.heads,
                "kept": int(k.sum()),
                "removed": np.flatnonzero(~k).tolist(),
            }
            for a, k in heads
        ],
        mlps=[{"name": p.name, "units": p.width, "kept": int(k.sum())} for p, k in units],
        params_before=before[0],
        params_after=count_params(model),
        flops_before=before[1],
        flops_after=count_flops(model, inputs)[0] if inputs else 0,
    )
