"""BlockDrop (Wu, Nagarajan, Kumar, Rennie, Davis, Grauman & Feris 2018): a small policy
network looks at the input and decides, per example, which residual blocks of a trained
ResNet to run; the others are skipped (their input passes through).

    net = sq.dynamic.block_drop(model, example_inputs=x)        # the zoo's residual blocks
    sq.dynamic.train_policy(net, train, epochs=5, penalty=2.0)   # REINFORCE, backbone frozen
    net.eval(); logits = net(images)                             # net.last_mask: blocks run
    print(sq.analysis.measure_data(net, test, baseline=model))   # expected FLOPs, time

The policy outputs one probability per block. Training (:func:`train_policy`) samples a
keep/drop decision per block and example from them (mixed with their complement for
exploration), runs the frozen backbone, and rewards ``1 - (blocks used / K)^2`` when the
prediction is right and ``-penalty`` when it is wrong; the gradient is REINFORCE's with the
greedy decisions' reward as the baseline (self-critical). At inference a block runs where its
probability is above one half. Skipping is real: a block runs on the rows of the batch that
use it only, so the work saved shows in the clock.

Only blocks whose output has their input's shape can be skipped (a block that downsamples
has nothing to pass through); :func:`block_drop` says which it leaves always on. The
policy's cost is part of every example's FLOPs (:meth:`BlockDropNet.forward_flops`).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from squeezer.core.modules import matches, set_module
from squeezer.errors import ConfigError, ModelError


class SkippableBlock(nn.Module):
    """``block`` run on the rows of the batch where ``run_mask`` is True; the other rows
    pass through unchanged. Without a mask it is the block itself."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.block = block
        self.run_mask: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        mask = self.run_mask
        if mask is None or bool(mask.all()):
            return self.block(x)
        if not bool(mask.any()):
            return x
        rows = mask.nonzero().squeeze(1)
        out = x.clone()
        out[rows] = self.block(x.index_select(0, rows))
        return out


def default_policy(in_channels: int, blocks: int, width: int = 16) -> nn.Sequential:
    """A small CNN from the image to one logit per block: two stride-2 3x3 convs with
    BatchNorm and ReLU, global average pooling, one Linear (its bias starts at 2: every block
    kept with probability 0.88, the trained network's own behaviour)."""
    head = nn.Linear(2 * width, blocks)
    nn.init.zeros_(head.weight)
    nn.init.constant_(head.bias, 2.0)
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, 2, 1, bias=False), nn.BatchNorm2d(2 * width), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), head,
    )  # fmt: skip


class BlockDropNet(nn.Module):
    """A backbone with skippable blocks and the policy that picks them (see the module).

    Attributes:
        model: the backbone (its blocks wrapped in :class:`SkippableBlock`).
        policy: image -> one logit per block.
        names: the skippable blocks' names in ``model``, in the policy's output order.
        last_mask: ``(batch, blocks)``, True where a block ran, for the last eval batch.
    """

    def __init__(self, model: nn.Module, policy: nn.Module, names: Sequence[str]) -> None:
        super().__init__()
        self.model, self.policy, self.names = model, policy, list(names)
        self.last_mask: Tensor | None = None
        self._costs: tuple[tuple[int, ...], float, Tensor] | None = None

    @property
    def blocks(self) -> list[SkippableBlock]:
        found = [self.model.get_submodule(n) for n in self.names]
        assert all(isinstance(b, SkippableBlock) for b in found)
        return found  # type: ignore[return-value]

    def run(self, x: Tensor, mask: Tensor | None) -> Tensor:
        """The backbone on ``x`` with block ``k`` run where ``mask[:, k]`` (None: all)."""
        blocks = self.blocks
        try:
            for k, block in enumerate(blocks):
                block.run_mask = None if mask is None else mask[:, k]
            return self.model(x)
        finally:
            for block in blocks:
                block.run_mask = None

    def decide(self, x: Tensor) -> Tensor:
        """The inference decisions: block ``k`` runs for an example where its probability
        is above one half."""
        return self.policy(x) > 0

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            return self.run(x, None)
        mask = self.decide(x)
        self.last_mask = mask
        return self.run(x, mask)

    def block_costs(self, example: Tensor) -> tuple[float, Tensor]:
        """FLOPs of one example through the whole backbone plus the policy, and of each
        skippable block (counted once per input shape)."""
        from squeezer.analysis import count_flops

        shape = tuple(example.shape[1:])
        if self._costs is None or self._costs[0] != shape:
            was = self.training
            self.eval()
            try:
                total, per_module = count_flops(self.model, example[:1])
                policy = count_flops(self.policy, example[:1])[0]
            finally:
                self.train(was)
            blocks = torch.tensor([float(per_module.get(n, 0)) for n in self.names])
            self._costs = (shape, float(total + policy), blocks.double())
        return self._costs[1], self._costs[2]

    def forward_flops(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The outputs for ``x`` (eval mode) and each example's FLOPs: the whole backbone and
        the policy, less the blocks it skipped."""
        full, blocks = self.block_costs(x)
        out = self(x)
        assert self.last_mask is not None
        skipped = (~self.last_mask).double().cpu() @ blocks
        return out, full - skipped


def _zoo_blocks(model: nn.Module) -> list[str]:
    from squeezer.models.resnet import BasicBlock, Bottleneck

    return [n for n, m in model.named_modules() if isinstance(m, (BasicBlock, Bottleneck))]


def block_drop(
    model: nn.Module,
    blocks: Sequence[str] = (),
    example_inputs: Tensor | None = None,
    policy: nn.Module | None = None,
    policy_width: int = 16,
) -> BlockDropNet:
    """Make ``model``'s residual blocks skippable per example and attach a policy.

    Args:
        model: a trained network; its blocks are wrapped in place (with no decision made they
            compute what they did).
        blocks: names or patterns of the blocks (default: the zoo's residual blocks); those
            whose output shape differs from their input's stay always on, unless named
            exactly, which is an error.
        example_inputs: one example batch (default: a zero image of ``model.input_shape``).
        policy: image -> one logit per skippable block (default: :func:`default_policy`).
        policy_width: channels of the default policy's first conv.

    Raises:
        ModelError: no block can be skipped, a named block changes the shape, or the policy
            does not give one logit per block.
    """
    if example_inputs is None:
        shape = getattr(model, "input_shape", None)
        if not shape:
            raise ModelError("block_drop: pass example_inputs (the model has no input_shape)")
        example_inputs = torch.zeros(1, *shape)
    modules = dict(model.named_modules())
    if blocks:
        chosen = [n for n in modules if n and matches(n, list(blocks))]
        if not chosen:
            raise ModelError(f"block_drop: no module matches {list(blocks)}")
    else:
        chosen = _zoo_blocks(model)
        if not chosen:
            raise ModelError("block_drop: the model has no zoo residual blocks; name them")
    shapes: dict[str, tuple[torch.Size, torch.Size]] = {}

    def seen(name: str, args: tuple[Any, ...], out: Any) -> None:
        if name not in shapes and args and isinstance(args[0], Tensor) and isinstance(out, Tensor):
            shapes[name] = (args[0].shape, out.shape)

    hooks = [
        modules[n].register_forward_hook(lambda m, a, out, n=n: seen(n, a, out)) for n in chosen
    ]
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(example_inputs[:1])
    finally:
        model.train(was)
        for h in hooks:
            h.remove()
    skippable = []
    for n in chosen:
        if n not in shapes:
            raise ModelError(f"block_drop: {n} is not called by the model's forward pass")
        shape_in, shape_out = shapes[n]
        if shape_in != shape_out:
            if blocks and n in blocks:
                raise ModelError(
                    f"block_drop: {n} maps {tuple(shape_in)} to {tuple(shape_out)}; only "
                    "blocks that keep the shape can be skipped"
                )
            continue
        skippable.append(n)
    if not skippable:
        raise ModelError("block_drop: no chosen block keeps its input's shape")
    for n in skippable:
        if not isinstance(modules[n], SkippableBlock):
            set_module(model, n, SkippableBlock(modules[n]))
    if policy is None:
        policy = default_policy(example_inputs.shape[1], len(skippable), policy_width)
    with torch.no_grad():
        was_p = policy.training
        policy.eval()
        logits = policy(example_inputs[:1])
        policy.train(was_p)
    if logits.shape != (1, len(skippable)):
        raise ModelError(
            f"block_drop: the policy gives {tuple(logits.shape[1:])} per example; it must "
            f"give one logit per skippable block ({len(skippable)})"
        )
    return BlockDropNet(model, policy, skippable)


def _reward(correct: Tensor, used: Tensor, blocks: int, penalty: float) -> Tensor:
    return torch.where(correct, 1.0 - (used.float() / blocks) ** 2, torch.full_like(
        used, -penalty, dtype=torch.float32))  # fmt: skip


def train_policy(
    net: BlockDropNet,
    train: Any,
    *,
    epochs: int = 5,
    lr: float = 1e-3,
    penalty: float = 2.0,
    explore: float = 0.8,
    batch_size: int = 128,
    seed: int = 0,
    verbose: bool = False,
    progress: bool | None = None,
) -> list[dict[str, float]]:
    """Train ``net``'s policy by REINFORCE with the backbone frozen (see the module).

    Args:
        net: from :func:`block_drop`.
        train: an :class:`~squeezer.data.ImageDataset` (shuffled each epoch) or batches of
            ``(inputs, labels)``.
        epochs: passes over ``train``.
        lr: Adam's learning rate.
        penalty: the reward of a wrong prediction is ``-penalty`` (larger: accuracy first).
        explore: decisions are sampled from ``explore * p + (1 - explore) * (1 - p)``.
        batch_size: for a dataset.
        seed: of the sampling and the shuffling.
        verbose: print a line per epoch.
        progress: a progress bar (default: when standard error is a terminal).

    Returns:
        Per epoch: mean reward, blocks used (fraction) and accuracy of the greedy decisions.
    """
    if epochs < 1 or lr <= 0 or penalty < 0 or not 0.5 <= explore <= 1:
        raise ConfigError(
            "train_policy: epochs >= 1, lr > 0, penalty >= 0 and explore in [0.5, 1] please"
        )
    from squeezer.data import ImageDataset, loader

    device = next(net.policy.parameters()).device
    optimizer = torch.optim.Adam(net.policy.parameters(), lr=lr)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    k = len(net.names)
    quiet = not sys.stderr.isatty() if progress is None else not progress
    history = []
    net.model.eval()
    frozen = [p.requires_grad for p in net.model.parameters()]
    for p in net.model.parameters():
        p.requires_grad_(False)
    try:
        for epoch in range(epochs):
            batches = (loader(train, batch_size, shuffle=True, seed=seed + epoch)
                       if isinstance(train, ImageDataset) else train)  # fmt: skip
            net.policy.train()
            totals = {"reward": 0.0, "used": 0.0, "greedy_top1": 0.0}
            seen = 0
            for x, y in tqdm(batches, desc=f"policy epoch {epoch + 1}", disable=quiet):
                x, y = x.to(device), y.to(device)
                probs = torch.sigmoid(net.policy(x))
                mixed = explore * probs + (1 - explore) * (1 - probs)
                with torch.no_grad():
                    u = torch.bernoulli(mixed.detach().cpu(), generator=gen).to(device).bool()
                    greedy = probs.detach() > 0.5
                    right = net.run(x, u).argmax(1) == y
                    right_g = net.run(x, greedy).argmax(1) == y
                    reward = _reward(right, u.sum(1), k, penalty)
                    advantage = reward - _reward(right_g, greedy.sum(1), k, penalty)
                log_p = torch.where(u, mixed.clamp_min(1e-8).log(),
                                    (1 - mixed).clamp_min(1e-8).log()).sum(1)  # fmt: skip
                loss = -(advantage * log_p).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                n = len(x)
                seen += n
                totals["reward"] += float(reward.sum())
                totals["used"] += float(greedy.float().mean(1).sum())
                totals["greedy_top1"] += float(right_g.sum())
            row = {key: v / max(seen, 1) for key, v in totals.items()}
            if not all(math.isfinite(v) for v in row.values()):
                raise ModelError("train_policy: the reward became NaN (lower lr)")
            history.append(row)
            if verbose:
                print(f"policy epoch {epoch + 1}: reward {row['reward']:.3f}, blocks used "
                      f"{row['used']:.1%}, greedy top-1 {row['greedy_top1']:.4f}")  # fmt: skip
    finally:
        for p, flag in zip(net.model.parameters(), frozen, strict=True):
            p.requires_grad_(flag)
    net.eval()
    return history
