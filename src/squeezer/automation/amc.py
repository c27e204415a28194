"""AMC (He et al. 2018): a DDPG agent chooses each layer group's channel ratio in turn; over
a :class:`~squeezer.automation.space.BitSpace` the same agent chooses each layer's bits under
a size budget, which is HAQ's search (Wang et al. 2019; here the cost is the file's bytes,
not a hardware simulator's latency).

The agent walks the channel groups of a :class:`~squeezer.automation.space.ChannelSpace` in
forward order. At step ``t`` it sees the embedding of the paper (Sec. 3.2): the index ``t``,
the producing layer's output and input channels, kernel size, stride and feature-map size, its
FLOPs, the FLOPs already removed, the FLOPs of the layers still to come and its previous
action, each scaled to [0, 1] over the model. Its action is the ratio of the group's channels
to remove, in ``[0, max_ratio]``. The budget is enforced as in the paper's resource-
constrained mode: an action is raised to the least that still lets the remaining groups (at
``max_ratio``) reach the budget, so every episode ends within it. The reward, given at the end
of an episode to each of its steps, is ``-error`` of the pruned model under the evaluator
(AMC scores without fine-tuning; here BatchNorm statistics are re-estimated first), less a
moving average of earlier rewards.

DDPG (Lillicrap et al. 2016): actor and critic with two hidden layers of 300 units, target
networks with soft updates (``tau``), a replay buffer, discount 1 (an episode is a few dozen
steps), exploration by truncated normal noise around the actor's action whose width starts at
``sigma`` and decays by ``decay`` per episode after the random warm-up episodes.
"""

from __future__ import annotations

import copy
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from squeezer.automation.search import SearchResult, TrialResult, require_reachable
from squeezer.automation.space import Budget, Space
from squeezer.errors import ConfigError


@dataclass(frozen=True)
class AMCConfig:
    """The agent's settings (the paper's, scaled to a CPU: fewer episodes)."""

    episodes: int = 60
    warmup: int = 15
    sigma: float = 0.5
    decay: float = 0.95
    hidden: int = 300
    actor_lr: float = 1e-4
    critic_lr: float = 1e-3
    tau: float = 0.01
    batch_size: int = 64
    buffer: int = 2000
    baseline_decay: float = 0.95
    seed: int = 0

    def __post_init__(self) -> None:
        if self.episodes < 1 or self.warmup < 0:
            raise ConfigError("AMC: episodes must be >= 1 and warmup >= 0")
        if not 0 < self.tau <= 1 or not 0 < self.decay <= 1 or self.sigma < 0:
            raise ConfigError("AMC: tau and decay must be in (0, 1], sigma >= 0")


def _mlp(inputs: int, hidden: int, out: int) -> nn.Module:
    return nn.Sequential(nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, hidden),
                         nn.ReLU(), nn.Linear(hidden, out))  # fmt: skip


class _Agent:
    def __init__(self, dim: int, cfg: AMCConfig) -> None:
        self.actor = nn.Sequential(_mlp(dim, cfg.hidden, 1), nn.Sigmoid())
        self.critic = _mlp(dim + 1, cfg.hidden, 1)
        self.actor_target = copy.deepcopy(self.actor)
        self.critic_target = copy.deepcopy(self.critic)
        self.opt_actor = torch.optim.Adam(self.actor.parameters(), lr=cfg.actor_lr)
        self.opt_critic = torch.optim.Adam(self.critic.parameters(), lr=cfg.critic_lr)
        self.cfg = cfg
        self.memory: list[tuple[np.ndarray, float, float, np.ndarray, float]] = []

    def act(self, state: np.ndarray) -> float:
        with torch.no_grad():
            return float(self.actor(torch.as_tensor(state, dtype=torch.float32)[None])[0, 0])

    def remember(self, s: np.ndarray, a: float, r: float, s2: np.ndarray, done: bool) -> None:
        self.memory.append((s, a, r, s2, float(done)))
        if len(self.memory) > self.cfg.buffer:
            self.memory.pop(0)

    def update(self, rng: np.random.Generator) -> None:
        if len(self.memory) < 2:
            return
        idx = rng.integers(0, len(self.memory), min(self.cfg.batch_size, len(self.memory)))
        s, a, r, s2, done = (torch.as_tensor(np.array(v), dtype=torch.float32)
                             for v in zip(*(self.memory[i] for i in idx), strict=True))  # fmt: skip
        a, r, done = a[:, None], r[:, None], done[:, None]
        with torch.no_grad():
            q_next = self.critic_target(torch.cat([s2, self.actor_target(s2)], 1))
            target = r + (1 - done) * q_next  # discount 1
        q = self.critic(torch.cat([s, a], 1))
        loss = nn.functional.mse_loss(q, target)
        self.opt_critic.zero_grad()
        loss.backward()
        self.opt_critic.step()
        policy_loss = -self.critic(torch.cat([s, self.actor(s)], 1)).mean()
        self.opt_actor.zero_grad()
        policy_loss.backward()
        self.opt_actor.step()
        with torch.no_grad():
            for net, tgt in ((self.actor, self.actor_target), (self.critic, self.critic_target)):
                for p, t in zip(net.parameters(), tgt.parameters(), strict=True):
                    t.mul_(1 - self.cfg.tau).add_(p, alpha=self.cfg.tau)


def _states(space: Space) -> np.ndarray:
    """The static part of each step's embedding: t, out, in, kernel, stride, size, FLOPs."""
    rows = space.features()
    static = np.array([[t, r["out"], r["in"], r["kernel"], r["stride"], r["size"], r["flops"]]
                       for t, r in enumerate(rows)], dtype=np.float64)  # fmt: skip
    return static


def _truncated_normal(rng: np.random.Generator, mean: float, sigma: float) -> float:
    if sigma <= 0:
        return mean
    for _ in range(100):
        v = rng.normal(mean, sigma)
        if 0.0 <= v <= 1.0:
            return float(v)
    return float(min(1.0, max(0.0, mean)))


def amc_search(
    space: Space,
    evaluator: Callable[[nn.Module], float],
    budget: Budget,
    config: AMCConfig | None = None,
    *,
    progress: bool | None = None,
) -> SearchResult:
    """Search per-group channel settings with AMC's DDPG agent under ``budget``.

    Args:
        space: the model's :class:`ChannelSpace` (channel ratios) or :class:`BitSpace`
            (bits per layer, HAQ).
        evaluator: scores a pruned model (top-1 on held-out data, higher is better).
        budget: FLOPs, parameters or size (AMC's budget is counted, not timed; for a
            latency budget use :func:`~squeezer.automation.search`).
        config: the agent's settings.
        progress: a progress bar over episodes (default: when standard error is a terminal).

    Returns:
        A :class:`SearchResult` with one trial per episode.

    Raises:
        ConfigError: a latency budget, or one the space cannot reach (with the closest).
    """
    cfg = config or AMCConfig()
    if budget.measured:
        raise ConfigError("AMC: the budget must be flops, params or size (latency is timed; "
                          "use search() for a latency budget)")  # fmt: skip
    metric = budget.metric
    names = space.names
    total = space.measure(space.model, budget)  # the original's cost
    target = total / budget.reduction * (1 - 1e-4)  # margin for the counts' rounding
    require_reachable(space, budget, total)
    full = space.cost({}, metric)  # predicted at the weakest settings
    static = _states(space)
    scale = np.maximum(static.max(0), 1e-12)
    flops_of = static[:, 6]
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    agent = _Agent(static.shape[1] + 4, cfg)
    result = SearchResult(method="amc-ddpg", metric=metric, budget=budget,
                          original_cost=total,
                          original_accuracy=evaluator(copy.deepcopy(space.model)))  # fmt: skip
    baseline: float | None = None
    sigma = cfg.sigma
    cpu0, wall0 = time.process_time(), time.perf_counter()
    show = sys.stderr.isatty() if progress is None else progress
    bar = tqdm(range(cfg.episodes), desc="AMC", unit="episode", disable=not show, leave=False)

    def state(t: int, removed: float, prev: float) -> np.ndarray:
        rest = flops_of[t + 1 :].sum() / max(flops_of.sum(), 1e-12)
        dynamic = [removed / max(total, 1e-12), rest, prev, t / len(names)]
        return np.concatenate([static[t] / scale, dynamic])

    for episode in bar:
        t0 = time.perf_counter()
        settings: dict[str, float] = {}
        steps = []
        prev = 0.0
        for t, name in enumerate(names):
            removed = full - space.cost(settings, metric)
            s = state(t, removed, prev)
            if episode < cfg.warmup:
                a = float(rng.uniform(0, 1))
            else:
                a = _truncated_normal(rng, agent.act(s), sigma)
            # the least strength that keeps the budget reachable with the rest at the
            # strongest setting
            rest = {n: space.setting(n, 1.0) for n in names[t + 1 :]}
            if space.cost({**settings, name: space.setting(name, a), **rest}, metric) > target:
                lo, hi = a, 1.0
                for _ in range(30):
                    mid = (lo + hi) / 2
                    if space.cost({**settings, name: space.setting(name, mid), **rest},
                                  metric) <= target:  # fmt: skip
                        hi = mid
                    else:
                        lo = mid
                a = hi
            settings[name] = space.setting(name, a)
            steps.append((s, a))
            prev = a
        built = space.build(settings)
        accuracy = evaluator(built)
        cost = space.measure(built, budget)
        reward = -(1.0 - accuracy)
        baseline = reward if baseline is None else baseline
        advantage = reward - baseline
        baseline = cfg.baseline_decay * baseline + (1 - cfg.baseline_decay) * reward
        for i, (s, a) in enumerate(steps):
            done = i == len(steps) - 1
            s2 = steps[i + 1][0] if not done else s
            agent.remember(s, a, advantage, s2, done)
        if episode >= cfg.warmup:
            for _ in range(len(steps)):
                agent.update(rng)
            sigma *= cfg.decay
        result.trials.append(TrialResult(episode, dict(settings), accuracy, cost,
                                         result.original_cost / cost if cost else math.inf,
                                         time.perf_counter() - t0, "amc"))  # fmt: skip
        best = result.best
        if best is not None:
            bar.set_postfix_str(f"best {100 * best.accuracy:.2f}%")
    bar.close()
    result.cpu_seconds = time.process_time() - cpu0
    result.wall_seconds = time.perf_counter() - wall0
    return result
