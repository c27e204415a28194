"""Channel selection by reconstructing the next layer's output: ThiNet and LASSO.

Both look at the layer that *consumes* a group of channels. For sampled output entries y of
that layer, the contribution of each input channel c is x_c (so y = sum_c x_c, bias aside).

- ThiNet (Luo, Wu & Lin 2017) removes channels greedily: at each step the channel whose
  removal keeps ||sum over removed x_c||^2 smallest.
- LASSO selection (He, Zhang & Sun 2017) solves min ||y - sum_c beta_c x_c||^2 + alpha |beta|_1
  with beta >= 0, raising alpha until few enough channels keep a non-zero beta.

After the channels are removed the consumer is refit by least squares on the sampled outputs:
ThiNet scales each kept channel's weights by w = argmin ||y - sum_kept w_c x_c||^2; for LASSO,
as He et al. do, the consumer's whole weight is refit on the kept inputs. When a group feeds
several consumers (a residual stage), the channels are chosen to reconstruct all of them at
once: their sampled contributions are stacked, each consumer's block scaled to equal weight,
and every consumer is refit on its own samples. Groups that feed a depthwise layer fall back to
the filter L1 norm.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from squeezer.errors import ConfigError
from squeezer.pruning.criteria.base import Batches, Criterion, Groups, register_criterion
from squeezer.pruning.criteria.norms import filter_norm
from squeezer.surgery import ChannelClass, ChannelGraph, ChannelPlan


def _consumers(classes: Sequence[ChannelClass]) -> list[str] | None:
    """The plain consumers of a group, or None when the group is not eligible."""
    names = set()
    for c in classes:
        for b, _ in c.members:
            if b.kind == "dw":
                return None
            if b.kind == "in":
                names.add(b.module)
    return sorted(names) or None


def _contributions(
    model: nn.Module,
    graph: ChannelGraph,
    consumer: str,
    roots: Sequence[int],
    data: Iterable[tuple[Tensor, Tensor]],
    samples: int,
    seed: int,
) -> np.ndarray:
    """Matrix X (samples x classes): each class's contribution to sampled outputs."""
    module = model.get_submodule(consumer)
    binding = next(b for b in graph.bindings if b.module == consumer and b.kind == "in")
    index_root = np.array([graph.uf.find(int(s)) for s in binding.slots])
    column = {r: j for j, r in enumerate(roots)}
    captured: list[Tensor] = []
    handle = module.register_forward_pre_hook(lambda _m, a: captured.append(a[0].detach()))
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            for x, _ in data:
                model(x)
    finally:
        handle.remove()
        model.train(was)
    gen = torch.Generator().manual_seed(seed)
    inputs = torch.cat(captured)
    w = module.weight.detach()
    if isinstance(module, nn.Conv2d):
        patches = F.unfold(
            inputs, module.kernel_size, module.dilation, module.padding, module.stride
        )  # (N, C*kk, L)
        n, ckk, positions = patches.shape
        c = module.in_channels
        pick_n = torch.randint(0, n, (samples,), generator=gen)
        pick_l = torch.randint(0, positions, (samples,), generator=gen)
        pick_o = torch.randint(0, module.out_channels, (samples,), generator=gen)
        flat = patches[pick_n, :, pick_l]  # (samples, C*kk)
        p = flat.view(samples, c, ckk // c)
        contrib = (w[pick_o].view(samples, c, -1) * p).sum(-1)  # (samples, C)
    else:
        pick_n = torch.randint(0, inputs.shape[0], (samples,), generator=gen)
        pick_o = torch.randint(0, module.out_features, (samples,), generator=gen)
        flat = inputs[pick_n]
        contrib = w[pick_o] * flat  # (samples, F)
    targets = flat.double() @ w.flatten(1).double().t()
    out = np.zeros((samples, len(roots)))
    contrib_np = contrib.double().numpy()
    for i, r in enumerate(index_root.tolist()):
        j = column.get(r)
        if j is not None:
            out[:, j] += contrib_np[:, i]
    return out, flat.double().numpy(), targets.numpy()


def thinet_order(x: np.ndarray) -> list[int]:
    """Columns of ``x`` in ThiNet's greedy removal order (first = least needed)."""
    removed: list[int] = []
    left = list(range(x.shape[1]))
    running = np.zeros(x.shape[0])
    sq_norms = (x**2).sum(0)
    while left:
        cand = np.array(left)
        cost = 2 * running @ x[:, cand] + sq_norms[cand]
        best = int(cand[int(np.argmin(cost))])
        removed.append(best)
        running += x[:, best]
        left.remove(best)
    return removed


def lasso_order(x: np.ndarray, y: np.ndarray) -> list[int]:
    """Columns in the order a growing LASSO penalty drives their coefficients to zero."""
    from sklearn.linear_model import Lasso

    scale = np.abs(x).max() or 1.0
    xs, ys = x / scale, y / scale
    alive_at = np.zeros(x.shape[1])
    alphas = np.geomspace(1e-6, 1.0, 25) * float(np.abs(xs.T @ ys).max() / len(ys) + 1e-12)
    for alpha in alphas:
        beta = (
            Lasso(alpha=alpha, positive=True, fit_intercept=False, max_iter=5000).fit(xs, ys).coef_
        )
        alive_at[beta > 1e-10] = alpha  # the largest penalty at which it survived
    tie = (x**2).sum(0)
    return sorted(range(x.shape[1]), key=lambda j: (alive_at[j], tie[j]))


class _Reconstruction(Criterion):
    """Scores from the reconstruction of each group's consumers; refit after removal."""

    needs_data: ClassVar[bool] = True
    options: ClassVar[tuple[str, ...]] = ("samples", "seed")
    refit: ClassVar[str] = ""

    def __init__(self, samples: int = 4000, seed: int = 0) -> None:
        if samples < 1:
            raise ConfigError(f"criterion {self.name!r}: samples must be >= 1")
        self.samples, self.seed = int(samples), int(seed)
        self.fits: dict[str, Any] = {}

    @abstractmethod
    def order(self, x: np.ndarray) -> list[int]:
        """Columns of the stacked contributions, least needed first."""

    def score(
        self, model: nn.Module, graph: ChannelGraph, groups: Groups, data: Batches | None
    ) -> dict[int, float]:
        if data is None:
            raise ConfigError(f"criterion {self.name!r} needs data=batches of (inputs, targets)")
        batches = list(data)
        scores: dict[int, float] = {}
        self.fits = {}
        for classes in groups.values():
            consumers = _consumers(classes)
            if consumers is None:  # feeds a depthwise layer: L1 (scores compare in a group)
                scores.update({c.root: filter_norm(model, c) for c in classes})
                continue
            roots = [c.root for c in classes]
            blocks = []
            for consumer in consumers:
                x, patches, targets = _contributions(
                    model, graph, consumer, roots, batches, self.samples, self.seed
                )
                blocks.append(x / (np.linalg.norm(x.sum(1)) or 1.0))  # consumers weigh alike
                self.fits[consumer] = {
                    "roots": roots,
                    "x": x,
                    "patches": patches,
                    "targets": targets,
                    "refit": self.refit,
                }
            for rank, j in enumerate(self.order(np.vstack(blocks))):
                scores[roots[j]] = float(rank)
        return scores

    def compensate(self, original: nn.Module, pruned: nn.Module, plan: ChannelPlan) -> None:
        rescale_(pruned, plan, self.fits)


@register_criterion
class ThiNet(_Reconstruction):
    name: ClassVar[str] = "thinet"
    summary: ClassVar[str] = "greedy reconstruction of the next layer, rescaled (Luo 2017)"
    refit: ClassVar[str] = "scale"

    def order(self, x: np.ndarray) -> list[int]:
        return thinet_order(x)


@register_criterion
class LassoSelection(_Reconstruction):
    name: ClassVar[str] = "lasso"
    summary: ClassVar[str] = "LASSO channel selection, next layer refit by least squares (He 2017)"
    refit: ClassVar[str] = "full"

    def order(self, x: np.ndarray) -> list[int]:
        return lasso_order(x, x.sum(1))


def rescale_(pruned: nn.Module, plan: ChannelPlan, fits: Mapping[str, Any]) -> None:
    """Refit each consumer of a reconstructed group by least squares on the sampled outputs.

    ThiNet (``refit="scale"``) scales each kept channel's weights by one factor; LASSO
    (``refit="full"``, He et al. 2017) refits the consumer's whole weight on the kept inputs.
    """
    removed = {c.root for c in plan.removed}
    graph = plan.graph
    for consumer, fit in fits.items():
        roots, x = fit["roots"], fit["x"]
        kept = [j for j, r in enumerate(roots) if r not in removed]
        if len(kept) == len(roots) or not kept:
            continue
        binding = next(b for b in graph.bindings if b.module == consumer and b.kind == "in")
        index_root = [graph.uf.find(int(s)) for s in binding.slots]
        module = pruned.get_submodule(consumer)
        if fit["refit"] == "full":
            _refit_full(module, plan, consumer, index_root, removed, fit)
            continue
        w, *_ = np.linalg.lstsq(x[:, kept], x.sum(1), rcond=None)
        factor = {roots[j]: float(v) for j, v in zip(kept, w, strict=True)}
        kept_roots = [r for r in index_root if r not in removed]
        with torch.no_grad():
            for i, r in enumerate(kept_roots):
                if r in factor:
                    module.weight[:, i] *= factor[r]


def _refit_full(
    module: nn.Module,
    plan: ChannelPlan,
    consumer: str,
    index_root: list[int],
    removed: set[int],
    fit: Mapping[str, Any],
) -> None:
    keep_inputs = np.array([r not in removed for r in index_root])
    per_input = fit["patches"].shape[1] // len(index_root)  # kernel positions per input
    columns = np.repeat(keep_inputs, per_input)
    rows = plan.keep.get((consumer, "out"))
    targets = fit["targets"] if rows is None else fit["targets"][:, rows]
    solution, *_ = np.linalg.lstsq(fit["patches"][:, columns], targets, rcond=None)
    with torch.no_grad():
        new = torch.from_numpy(solution.T.copy()).to(module.weight.dtype)
        module.weight.copy_(new.view_as(module.weight))
