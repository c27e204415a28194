"""Denton et al. 2014, "Exploiting linear structure within convolutional networks".

- :class:`Monochromatic`: each filter's ``C x (k k)`` slice is approximated by rank one, a
  colour vector times a spatial filter; the colour vectors are clustered into K colours. The
  layer becomes a 1x1 conv to K colour channels, a channel gather (each filter reads its
  colour) and a depthwise k x k conv. ``rank`` is the number of colours (a fraction is of the
  number of filters).
- :class:`Bicluster`: input channels are clustered into G groups and filters into H groups
  (balanced k-means); every (input group, filter group) sub-tensor is approximated by rank K
  (SVD): a 1x1 projection of the group's channels to K maps, then a k x k conv to the group's
  filters. The block is grouped convs with channel gathers between them. ``rank`` is K
  (a fraction is of the smallest sub-tensor's full rank).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from sklearn.cluster import KMeans
from torch import nn

from squeezer.config import check
from squeezer.errors import ConfigError
from squeezer.factorization.base import (
    Conversion,
    Factorization,
    conv_like,
    copy_bias,
    pair,
    select,
    to_param,
    weight_array,
)
from squeezer.factorization.rank import RankSpec
from squeezer.layers import ChannelSelect


def balanced_clusters(points: np.ndarray, groups: int, seed: int = 0) -> np.ndarray:
    """Cluster labels with exactly ``len(points) / groups`` points per cluster.

    k-means proposes centres; points are then assigned greedily, nearest pairs first, to
    clusters that still have room.
    """
    n = len(points)
    size = n // groups
    if groups == 1:
        return np.zeros(n, dtype=np.int64)
    centres = KMeans(groups, n_init=4, random_state=seed).fit(points).cluster_centers_
    dist = ((points[:, None, :] - centres[None, :, :]) ** 2).sum(-1)
    labels = np.full(n, -1, dtype=np.int64)
    room = np.full(groups, size)
    for flat in np.argsort(dist, axis=None):
        i, g = divmod(int(flat), groups)
        if labels[i] < 0 and room[g] > 0:
            labels[i] = g
            room[g] -= 1
    return labels


def _oriented(v: np.ndarray) -> np.ndarray:
    """Fix the sign of each row so its largest-magnitude entry is positive."""
    idx = np.abs(v).argmax(axis=1)
    return v * np.sign(v[np.arange(len(v)), idx])[:, None]


@dataclass(frozen=True)
class Monochromatic(Factorization):
    """Denton's monochromatic approximation (meant for the first layer).

    Attributes:
        seed: random state of the colour clustering.
    """

    rank: int | float | str = 6
    seed: int = 0
    method: ClassVar[str] = "monochromatic"

    def _eligible(self, module: nn.Module) -> str | None:
        kh, kw = module.kernel_size  # type: ignore[union-attr]
        return "1x1 kernel" if kh * kw == 1 else None

    def convert(self, module: nn.Module, spec: RankSpec) -> Conversion:
        assert isinstance(module, nn.Conv2d)
        w = weight_array(module)
        n, c, kh, kw = w.shape
        s2 = math.prod(module.stride)
        if spec.kind in ("vbmf", "energy"):
            raise ConfigError(f"Monochromatic: rank {spec} is not supported; give a colour count")
        (k,) = select(
            spec, [None], [n], lambda r: c * r[0] + n * kh * kw, n * c * kh * kw,
            lambda r: c * r[0] * s2 + n * kh * kw, n * c * kh * kw,
        )  # fmt: skip
        slices = w.reshape(n, c, kh * kw)
        colours = np.empty((n, c))
        for i in range(n):
            colours[i] = np.linalg.svd(slices[i], full_matrices=False)[0][:, 0]
        colours = _oriented(colours)
        if k >= n:
            labels, centres = np.arange(n), colours
        else:
            km = KMeans(k, n_init=4, random_state=self.seed).fit(colours)
            labels, centres = km.labels_, km.cluster_centers_
        centres = centres / np.linalg.norm(centres, axis=1, keepdims=True).clip(1e-12)
        # best spatial filter for each filter's (fixed) colour: least squares
        spatial = np.einsum("ncs,nc->ns", slices, centres[labels])
        (sh, sw), (ph, pw), (dh, dw) = module.stride, pair(module.padding), module.dilation
        project = conv_like(c, len(centres), (1, 1), module)
        depthwise = conv_like(
            n, n, (kh, kw), module, stride=(sh, sw), padding=(ph, pw), dilation=(dh, dw),
            groups=n, bias=module.bias is not None,
        )  # fmt: skip
        project.weight = to_param(centres[:, :, None, None], module.weight)
        depthwise.weight = to_param(spatial.reshape(n, 1, kh, kw), module.weight)
        copy_bias(depthwise, module)
        approx = np.einsum("nc,ns->ncs", centres[labels], spatial).reshape(w.shape)
        block = nn.Sequential(project, ChannelSelect(labels.tolist()), depthwise)
        return Conversion(block, [len(centres)], torch.as_tensor(approx))


@dataclass(frozen=True)
class Bicluster(Factorization):
    """Denton's biclustering plus SVD.

    Attributes:
        in_groups: G, clusters of input channels (must divide the input channels).
        out_groups: H, clusters of filters (must divide the output channels).
        seed: random state of the clustering.
    """

    in_groups: int = 2
    out_groups: int = 2
    seed: int = 0
    method: ClassVar[str] = "bicluster"

    def validate(self) -> None:
        super().validate()
        check(self.in_groups >= 1 and self.out_groups >= 1, "Bicluster: groups must be >= 1")

    def _eligible(self, module: nn.Module) -> str | None:
        assert isinstance(module, nn.Conv2d)
        if module.in_channels % self.in_groups or module.out_channels % self.out_groups:
            return (
                f"{module.in_channels} inputs / {module.out_channels} filters do not split into "
                f"{self.in_groups} / {self.out_groups} equal groups"
            )
        return None

    def convert(self, module: nn.Module, spec: RankSpec) -> Conversion:
        assert isinstance(module, nn.Conv2d)
        w = weight_array(module)
        n, c, kh, kw = w.shape
        g_count, h_count = self.in_groups, self.out_groups
        cg, nh = c // g_count, n // h_count
        s2 = math.prod(module.stride)
        in_labels = balanced_clusters(w.transpose(1, 0, 2, 3).reshape(c, -1), g_count, self.seed)
        out_labels = balanced_clusters(w.reshape(n, -1), h_count, self.seed)
        in_sets = [np.flatnonzero(in_labels == g) for g in range(g_count)]
        out_sets = [np.flatnonzero(out_labels == h) for h in range(h_count)]
        subs = {
            (g, h): w[np.ix_(out_sets[h], in_sets[g])].transpose(1, 0, 2, 3).reshape(cg, -1)
            for g in range(g_count)
            for h in range(h_count)
        }
        full = min(cg, nh * kh * kw)
        per_block = [
            select(spec, [m], [full], lambda r: r[0], 1.0)[0]
            if spec.kind not in ("compression", "flops")
            else 0
            for m in subs.values()
        ]
        if spec.kind in ("compression", "flops"):
            (k,) = select(
                spec, [None], [full],
                lambda r: r[0] * (c * h_count + g_count * n * kh * kw), n * c * kh * kw,
                lambda r: r[0] * (c * h_count * s2 + g_count * n * kh * kw), n * c * kh * kw,
            )  # fmt: skip
        else:
            k = max(per_block)
        alpha = np.zeros((g_count, h_count, k, cg))  # 1x1: group g's channels -> K maps
        beta = np.zeros((h_count, nh, g_count, k, kh, kw))  # k x k: K maps -> group h's filters
        approx = np.zeros_like(w)
        for (g, h), m in subs.items():
            u, s, vt = np.linalg.svd(m, full_matrices=False)
            r = min(k, len(s))
            alpha[g, h, :r] = u[:, :r].T
            b = (s[:r, None] * vt[:r]).reshape(r, nh, kh, kw)
            beta[h, :, g, :r] = b.transpose(1, 0, 2, 3)
            approx[np.ix_(out_sets[h], in_sets[g])] = (
                (u[:, :r] @ (s[:r, None] * vt[:r])).reshape(cg, nh, kh, kw).transpose(1, 0, 2, 3)
            )
        (sh, sw), (ph, pw), (dh, dw) = module.stride, pair(module.padding), module.dilation
        gather_in = ChannelSelect(np.concatenate(in_sets).tolist())
        project = conv_like(c, g_count * h_count * k, (1, 1), module, groups=g_count)
        # project's outputs are ordered (g, h, k); the spatial conv wants (h, g, k)
        order = [
            (g * h_count + h) * k + j
            for h in range(h_count)
            for g in range(g_count)
            for j in range(k)
        ]
        spatial = conv_like(
            h_count * g_count * k, n, (kh, kw), module, stride=(sh, sw), padding=(ph, pw),
            dilation=(dh, dw), groups=h_count, bias=module.bias is not None,
        )  # fmt: skip
        out_order = np.concatenate(out_sets)
        project.weight = to_param(alpha.reshape(g_count * h_count * k, cg, 1, 1), module.weight)
        spatial.weight = to_param(beta.reshape(n, g_count * k, kh, kw), module.weight)
        if module.bias is not None:
            with torch.no_grad():
                spatial.bias.copy_(module.bias[torch.as_tensor(out_order)])
        restore = ChannelSelect(np.argsort(out_order).tolist())
        block = nn.Sequential(gather_in, project, ChannelSelect(order), spatial, restore)
        return Conversion(block, [k], torch.as_tensor(approx))
