"""The model-wide walker: ``factorize_(model, config)`` and its per-layer report."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from squeezer.analysis.counting import Inputs, as_tuple, count_flops
from squeezer.core import Report, apply, record, register_handler, replacement, set_module
from squeezer.errors import ModelError, SurgeryError
from squeezer.factorization.base import Conversion, Factorization
from squeezer.layers import FactorizedConv2d, FactorizedLinear


@dataclass
class LayerReport:
    """What happened to one eligible layer."""

    name: str
    method: str
    converted: bool
    reason: str = ""
    rank: str = ""
    ranks: list[int] = field(default_factory=list)
    params_before: int = 0
    params_after: int = 0
    flops_before: int = 0
    flops_after: int = 0
    weight_error: float | None = None  # ||W_approx - W||_F / ||W||_F
    output_error_before: float | None = None  # asymmetric reconstruction, relative
    output_error_after: float | None = None


@dataclass
class FactorizationReport(Report):
    """Per-layer and total results of :func:`factorize_`."""

    method: str
    layers: list[LayerReport]

    @property
    def converted(self) -> list[LayerReport]:
        return [r for r in self.layers if r.converted]

    def totals(self) -> dict[str, int]:
        rows = self.converted
        return {
            "layers_converted": len(rows),
            "params_before": sum(r.params_before for r in rows),
            "params_after": sum(r.params_after for r in rows),
            "flops_before": sum(r.flops_before for r in rows),
            "flops_after": sum(r.flops_after for r in rows),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "totals": self.totals(),
            "layers": [asdict(r) for r in self.layers],
        }

    def format(self) -> str:
        """A table a person can read."""
        head = f"{'layer':<28} {'ranks':<12} {'params':>21} {'FLOPs':>25} {'W err':>7}  note"
        lines = [f"factorization: {self.method}", head, "-" * len(head)]
        for r in self.layers:
            if not r.converted:
                lines.append(f"{r.name:<28} {'-':<12} {'':>21} {'':>25} {'':>7}  {r.reason}")
                continue
            ranks = "x".join(str(v) for v in r.ranks)
            params = f"{r.params_before:,} -> {r.params_after:,}"
            flops = f"{r.flops_before:,} -> {r.flops_after:,}"
            err = "" if r.weight_error is None else f"{r.weight_error:.3f}"
            note = ""
            if r.output_error_after is not None:
                note = f"output err {r.output_error_before:.3f} -> {r.output_error_after:.3f}"
            lines.append(f"{r.name:<28} {ranks:<12} {params:>21} {flops:>25} {err:>7}  {note}")
        t = self.totals()
        if t["layers_converted"]:
            lines.append(
                f"total over {t['layers_converted']} converted layers: params "
                f"{t['params_before']:,} -> {t['params_after']:,} "
                f"({t['params_before'] / max(t['params_after'], 1):.2f}x), FLOPs "
                f"{t['flops_before']:,} -> {t['flops_after']:,} "
                f"({t['flops_before'] / max(t['flops_after'], 1):.2f}x)"
            )
        else:
            lines.append("no layer converted")
        return "\n".join(lines)


def _default_inputs(model: nn.Module) -> tuple[Tensor, ...]:
    shape = getattr(model, "input_shape", None)
    if not shape:
        raise ModelError(
            "factorize_ needs example_inputs for a model without an input_shape attribute"
        )
    p = next(model.parameters())
    return (torch.zeros(1, *shape, dtype=p.dtype, device=p.device),)


def _first_example(inputs: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """One example of a batch: FLOPs of a layer and of its replacement are compared on the
    same single example (a batch of N would make the layer look N times dearer)."""
    return tuple(t[:1] if isinstance(t, Tensor) and t.ndim > 0 else t for t in inputs)


def _keep_geometry(block: nn.Module, layer: nn.Module) -> nn.Module:
    """A plain Sequential of factors as a block that keeps the layer's attributes."""
    if type(block) is not nn.Sequential:
        return block
    if isinstance(layer, nn.Conv2d):
        return FactorizedConv2d.wrap(block, layer)
    if isinstance(layer, nn.Linear):
        return FactorizedLinear.wrap(block, layer)
    return block


@torch.no_grad()
def _runs(model: nn.Module, inputs: tuple[Tensor, ...]) -> str | None:
    """None if ``model`` runs on ``inputs``, else the first line of the error."""
    was = model.training
    model.eval()
    try:
        model(*inputs)
    except Exception as exc:  # a user's model may fail in any way once a layer is a block
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return f"{type(exc).__name__}: {first}"[:200]
    finally:
        model.train(was)
    return None


@torch.no_grad()
def _layer_inputs(model: nn.Module, names: list[str], inputs: tuple[Tensor, ...]) -> dict:
    """First positional input of each named layer on one forward pass (and the call order)."""
    seen: dict[str, Tensor] = {}
    hooks = []
    for name in names:

        def hook(_m: nn.Module, args: tuple, name: str = name) -> None:
            if name not in seen and args and isinstance(args[0], Tensor):
                seen[name] = args[0].detach()

        hooks.append(model.get_submodule(name).register_forward_pre_hook(hook))
    was = model.training
    model.eval()
    try:
        model(*inputs)
    finally:
        model.train(was)
        for h in hooks:
            h.remove()
    return seen


def _params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _as_batches(data: Iterable[Any]) -> list[tuple[Tensor, ...]]:
    out = []
    for b in data:
        if isinstance(b, Tensor):
            out.append((b,))
        elif isinstance(b, list | tuple) and b and isinstance(b[0], Tensor):
            out.append((b[0],))  # (inputs, labels) pairs: keep the inputs
        else:
            raise ModelError("calibration data must yield tensors or (inputs, labels) pairs")
    return out


@torch.no_grad()
def _capture(model: nn.Module, name: str, batches: list[tuple[Tensor, ...]]) -> list[Tensor]:
    got: list[Tensor] = []
    h = model.get_submodule(name).register_forward_pre_hook(
        lambda _m, args: got.append(args[0].detach())
    )
    was = model.training
    model.eval()
    try:
        for b in batches:
            model(*b)
    finally:
        model.train(was)
        h.remove()
    return got


def _rows(last: nn.Module, z: Tensor) -> Tensor:
    """The last layer's input as the rows of a linear least-squares problem."""
    if isinstance(last, nn.Linear):
        return z.reshape(-1, z.shape[-1])
    assert isinstance(last, nn.Conv2d)
    cols = F.unfold(z, last.kernel_size, last.dilation, last.padding, last.stride)
    return cols.transpose(1, 2).reshape(-1, cols.shape[1])


def _targets(last: nn.Module, y: Tensor) -> Tensor:
    if isinstance(last, nn.Linear):
        return y.reshape(-1, y.shape[-1])
    return y.flatten(2).transpose(1, 2).reshape(-1, y.shape[1])


@torch.no_grad()
def _reconstruct(
    block: nn.Sequential,
    original: nn.Module,
    x_original: list[Tensor],
    x_current: list[Tensor],
    max_rows: int,
    seed: int,
) -> tuple[float, float] | None:
    """Zhang et al. 2016's asymmetric reconstruction, linear-response form.

    The block's last layer is refit by least squares so that the block applied to the inputs
    it receives in the *compressed* network matches the original layer's response to the
    *original* network's inputs. Returns the relative output error before and after, or None
    when the last layer is not an ungrouped conv or a Linear.
    """
    last = block[-1]
    if not (isinstance(last, nn.Linear) or (isinstance(last, nn.Conv2d) and last.groups == 1)):
        return None
    head = block[:-1]
    gen = torch.Generator().manual_seed(seed)
    a_rows, y_rows = [], []
    for xo, xc in zip(x_original, x_current, strict=True):
        z = head(xc)
        y = original(xo)
        if original.bias is not None:
            y = y - original.bias.view([-1] if isinstance(original, nn.Linear) else [1, -1, 1, 1])
        a, t = _rows(last, z), _targets(last, y)
        keep = torch.randperm(len(a), generator=gen)[: max(1, max_rows // len(x_original))]
        a_rows.append(a[keep])
        y_rows.append(t[keep])
    a = torch.cat(a_rows).double()
    t = torch.cat(y_rows).double()
    w_old = last.weight.reshape(last.weight.shape[0], -1).double()
    before = float((a @ w_old.T - t).norm() / t.norm().clamp_min(1e-12))
    ridge = 1e-6 * a.pow(2).sum(0).mean().clamp_min(1e-12)
    gram = a.T @ a + ridge * torch.eye(a.shape[1], dtype=a.dtype)
    w_new = torch.linalg.solve(gram, a.T @ t).T
    after = float((a @ w_new.T - t).norm() / t.norm().clamp_min(1e-12))
    if after < before:
        last.weight.copy_(w_new.reshape(last.weight.shape).to(last.weight.dtype))
    return before, min(before, after)


def factorize_(
    model: nn.Module,
    config: Factorization,
    example_inputs: Inputs | None = None,
    *,
    calibration: Iterable[Any] | None = None,
    data: Iterable[Any] | None = None,
    max_rows: int = 20000,
    progress: Callable[[str], None] | None = None,
) -> FactorizationReport:
    """Replace the eligible layers of ``model`` by factorized blocks, in place (the verb:
    it dispatches on ``config``'s type, see :func:`factorize_layers_`)."""
    return apply(
        "factorize", model, config, example_inputs, calibration=calibration, data=data,
        max_rows=max_rows, progress=progress,
    )  # fmt: skip


@register_handler("factorize", Factorization)
def factorize_layers_(
    model: nn.Module,
    config: Factorization,
    example_inputs: Inputs | None = None,
    *,
    calibration: Iterable[Any] | None = None,
    data: Iterable[Any] | None = None,
    max_rows: int = 20000,
    progress: Callable[[str], None] | None = None,
) -> FactorizationReport:
    """Replace the eligible layers of ``model`` by factorized blocks, in place.

    Each replacement is checked at once: a layer whose block would not have fewer FLOPs is
    skipped (unless ``force``), and one whose block the model cannot run with (a model that
    reads ``layer.stride`` or ``layer.weight.dtype``, say) is put back and reported. If the
    model does not run at the end, every layer is put back and :class:`SurgeryError` raised.

    Args:
        model: the model; its architecture record (``squeezer_arch``) gains one entry per
            replaced layer, so a saved copy reloads with the new structure.
        config: a method config, e.g. ``Tucker(rank="vbmf")``; its ``layers``, ``exclude``,
            ``layer_types``, ``per_layer`` and ``force`` fields choose the layers and ranks.
        example_inputs: inputs for one forward pass (layer input shapes and FLOPs); a zoo
            model's ``input_shape`` is used when omitted.
        calibration: optional batches (tensors or ``(inputs, labels)``); when given, each
            converted block's last layer is refit by asymmetric reconstruction (Zhang 2016).
        data: the verbs' common name for ``calibration``.
        max_rows: rows (pixels or examples) kept per layer for that least-squares fit.
        progress: called with each layer name as it is converted.

    Returns:
        A :class:`FactorizationReport` (printable, ``to_dict()`` for JSON).
    """
    from threadpoolctl import threadpool_limits

    # NumPy's BLAS would otherwise use every core, whatever torch.set_num_threads says.
    with threadpool_limits(limits=torch.get_num_threads()):
        return _factorize(
            model, config, example_inputs, calibration if calibration is not None else data,
            max_rows, progress,
        )  # fmt: skip


def _factorize(
    model: nn.Module,
    config: Factorization,
    example_inputs: Inputs | None,
    calibration: Iterable[Any] | None,
    max_rows: int,
    progress: Callable[[str], None] | None,
) -> FactorizationReport:
    inputs = as_tuple(example_inputs) if example_inputs is not None else _default_inputs(model)
    one = _first_example(inputs)
    candidates = [(name, m) for name, m in config.select(model) if name]
    names = [n for n, _ in candidates]
    shapes = _layer_inputs(model, names, one)
    order = {n: i for i, n in enumerate(shapes)}  # forward order
    candidates.sort(key=lambda nm: order.get(nm[0], len(order)))
    _, layer_flops = count_flops(model, one)
    batches = _as_batches(calibration) if calibration is not None else None
    reference = copy.deepcopy(model).eval() if batches is not None else None
    replaced: list[tuple[str, nn.Module]] = []
    rows: list[LayerReport] = []
    records: list[dict[str, Any]] = []
    owners: dict[int, list[str]] = {}  # tied weights: one tensor, several modules
    for mname, m in model.named_modules():
        for pname, param in m.named_parameters(recurse=False):
            owners.setdefault(id(param), []).append(f"{mname}.{pname}" if mname else pname)
    for name, module in candidates:
        spec = config.rank_for(name)
        row = LayerReport(name, config.method, False, rank=str(spec))
        rows.append(row)
        why = config.eligible(module)
        if why is None and name not in shapes:
            why = "not reached by the forward pass"
        weight = getattr(module, "weight", None)
        tied = [o for o in owners.get(id(weight), []) if o != f"{name}.weight"]
        if why is None and tied and name not in config.layers:
            why = (
                f"its weight is tied to {tied[0]}: factorizing would untie them and add "
                "parameters (name the layer in layers= to convert it anyway)"
            )
        if why is not None:
            row.reason = why
            continue
        if progress is not None:
            progress(name)
        conversion: Conversion = config.convert(module, spec)
        block = _keep_geometry(conversion.block, module).train(module.training)
        x = shapes[name][:1]
        row.ranks = list(conversion.ranks)
        row.params_before, row.params_after = _params(module), _params(block)
        row.flops_before = layer_flops.get(name, 0)
        row.flops_after = count_flops(block, x)[0]
        if conversion.approx_weight is not None:
            w = module.weight.detach().double()
            approx = conversion.approx_weight.double().reshape(w.shape)
            row.weight_error = float((approx - w).norm() / w.norm().clamp_min(1e-12))
        if row.flops_after >= row.flops_before and not config.force:
            row.reason = (
                f"would not reduce FLOPs ({row.flops_before:,} -> {row.flops_after:,}); "
                "force=True converts anyway"
            )
            continue
        set_module(model, name, block)
        failure = _runs(model, one)
        if failure is not None:
            set_module(model, name, module)
            row.reason = f"the model does not run with the block in place ({failure})"
            continue
        replaced.append((name, module))
        if batches is not None and isinstance(block, nn.Sequential):  # factor blocks too
            assert reference is not None
            xo = _capture(reference, name, batches)  # the layer's inputs in the original
            xc = _capture(model, name, batches)  # the block's inputs in the compressed net
            errors = _reconstruct(block, module, xo, xc, max_rows, seed=len(rows))
            if errors is not None:
                row.output_error_before, row.output_error_after = errors
        row.converted = True
        records.append(replacement(name, block))
    failure = _runs(model, inputs) if replaced else None
    if failure is not None:
        for name, module in reversed(replaced):
            set_module(model, name, module)
        raise SurgeryError(
            f"the factorized model does not run ({failure}); every layer was put back"
        )
    record(model, records)
    return FactorizationReport(config.method, rows)
