"""A soft decision tree as a student (Frosst & Hinton 2017, "Distilling a Neural Network Into
a Soft Decision Tree").

Every inner node ``i`` routes an input right with probability ``sigmoid(beta (w_i . x + b_i))``;
every leaf ``l`` holds a learned distribution ``Q_l = softmax(phi_l)``; the tree's prediction
is the mixture ``sum_l P_l(x) Q_l`` of the leaves weighted by the probability of the path to
each. :meth:`SoftDecisionTree.forward` returns the log of that mixture, so the ordinary
cross-entropy and Hinton's loss (``sq.distill``) train it. :class:`TreeBalance` adds the
paper's penalty that keeps each node from sending everything one way (a cross-entropy between
0.5 and the node's average right-probability, weighted ``lam * 2^-depth``).

A trained tree is readable: :meth:`SoftDecisionTree.path_probabilities` and the filters
``inner.weight`` show what each node looks at, and ``leaves`` what each leaf predicts.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from squeezer.errors import ConfigError
from squeezer.train import Callback, TrainState


class SoftDecisionTree(nn.Module):
    """A complete soft binary tree of ``depth`` levels of inner nodes (``2^depth`` leaves).

    Args:
        in_features: the size of a flattened input.
        num_classes: classes of the leaves' distributions.
        depth: levels of inner nodes (the paper: 4 for MNIST).
        beta: inverse temperature of the routing sigmoids (learned when ``learn_beta``).
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        depth: int = 4,
        beta: float = 1.0,
        learn_beta: bool = True,
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ConfigError("SoftDecisionTree: depth must be >= 1")
        self.depth, self.num_classes = depth, num_classes
        self.inner = nn.Linear(in_features, 2**depth - 1)
        self.leaves = nn.Parameter(torch.randn(2**depth, num_classes) * 0.1)
        log_beta = torch.tensor(float(beta)).log()
        self.log_beta = nn.Parameter(log_beta) if learn_beta else None
        if not learn_beta:
            self.register_buffer("fixed_log_beta", log_beta)
        self.last_routing: Tensor | None = None
        self.last_paths: Tensor | None = None

    def routing(self, x: Tensor) -> Tensor:
        """Right-probabilities of every inner node, (batch, nodes) in breadth-first order."""
        beta = (self.log_beta if self.log_beta is not None else self.fixed_log_beta).exp()
        return torch.sigmoid(beta * self.inner(x.flatten(1)))

    def path_probabilities(self, x: Tensor) -> Tensor:
        """``P_l(x)`` of every leaf, (batch, leaves); each row sums to 1."""
        right = self.routing(x)
        self.last_routing = right
        paths = x.new_ones(x.shape[0], 1)
        first = 0
        for level in range(self.depth):
            n = 2**level
            r = right[:, first : first + n]
            paths = torch.stack([paths * (1 - r), paths * r], dim=2).flatten(1)
            first += n
        self.last_paths = paths
        return paths

    def forward(self, x: Tensor) -> Tensor:
        paths = self.path_probabilities(x)
        mixture = paths @ F.softmax(self.leaves, dim=1)
        return mixture.clamp_min(1e-12).log()

    def node_reach(self) -> Tensor:
        """The probability of reaching every inner node in the last forward pass, (batch,
        nodes), in the order of :meth:`routing`."""
        if self.last_paths is None or self.last_routing is None:
            raise RuntimeError("node_reach: run the tree on a batch first")
        reach = [self.last_routing.new_ones(self.last_routing.shape[0], 1)]
        first = 0
        for level in range(self.depth - 1):
            n = 2**level
            r = self.last_routing[:, first : first + n]
            reach.append(torch.stack([reach[-1] * (1 - r), reach[-1] * r], dim=2).flatten(1))
            first += n
        return torch.cat(reach, dim=1)


class TreeBalance(Callback):
    """Frosst & Hinton's regularizer: for every inner node, the cross-entropy between 0.5 and
    its path-weighted average right-probability over the batch, weighted ``lam * 2^-d`` at
    depth ``d``."""

    def __init__(self, tree: SoftDecisionTree, lam: float = 0.1) -> None:
        if lam < 0:
            raise ConfigError("TreeBalance: lam must be >= 0")
        self.tree, self.lam = tree, lam

    def loss(self, state: TrainState, loss: Tensor) -> Tensor:
        tree = self.tree
        if tree.last_routing is None:
            return loss
        reach = tree.node_reach()
        alpha = (reach * tree.last_routing).sum(0) / reach.sum(0).clamp_min(1e-12)
        alpha = alpha.clamp(1e-6, 1 - 1e-6)
        depth = torch.cat([torch.full((2**d,), float(d)) for d in range(tree.depth)])
        weight = self.lam * (2.0 ** -depth.to(alpha.device))
        penalty = -(weight * 0.5 * (alpha.log() + (1 - alpha).log())).sum()
        return loss + penalty
