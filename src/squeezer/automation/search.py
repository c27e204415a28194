"""Black-box policy search with Optuna (A3): per-layer channel settings under a budget.

Each trial proposes a preference per channel group; :func:`~squeezer.automation.space.
scale_to_budget` turns it into settings that meet the budget exactly (so no trial is wasted on
an infeasible point), the space builds the pruned model and the evaluator scores it
(BatchNorm re-estimated, optionally a few fine-tuning steps, top-1 on held-out data). TPE
(the default) maximizes that score; ``random`` samples alike for comparison; NSGA-II instead
proposes the settings themselves and keeps the accuracy / cost Pareto front.

Trials live in an Optuna storage: in memory by default, or any database URL Optuna accepts
(``sqlite:///search.db`` on one machine, PostgreSQL for many). Several workers given the same
``storage`` and ``study_name`` share one study; a worker that dies mid-trial stops sending
heartbeats, and the next trial any worker starts marks it failed and re-queues its
parameters, so no trial is lost and the study goes on.
"""

from __future__ import annotations

import copy
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from squeezer.automation.space import Budget, Space, scale_to_budget
from squeezer.core import Report
from squeezer.errors import ConfigError

SAMPLERS = ("tpe", "random", "nsga2")


@dataclass
class TrialResult:
    """One evaluated policy."""

    number: int
    settings: dict[str, float]
    accuracy: float
    cost: float  # the budget's metric, counted (or measured) on the built model
    reduction: float  # the original's cost over this one's
    seconds: float
    worker: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class SearchResult(Report):
    """What a search found: the best trial meeting the budget, every finished trial, the
    Pareto front of accuracy against cost, and what the search cost."""

    method: str
    metric: str
    budget: Budget | None
    original_cost: float
    original_accuracy: float | None
    trials: list[TrialResult] = field(default_factory=list)
    cpu_seconds: float = 0.0
    wall_seconds: float = 0.0
    failed: int = 0

    @property
    def feasible(self) -> list[TrialResult]:
        if self.budget is None:
            return list(self.trials)
        limit = self.original_cost / self.budget.reduction
        slack = 1.10 if self.budget.measured else 1.0 + 1e-9  # timing noise
        return [t for t in self.trials if t.cost <= limit * slack]

    @property
    def best(self) -> TrialResult | None:
        return max(self.feasible, key=lambda t: t.accuracy, default=None)

    def pareto(self) -> list[TrialResult]:
        """The trials no other beats on both accuracy and cost, cheapest first."""
        front = [t for t in self.trials
                 if not any(o.accuracy >= t.accuracy and o.cost <= t.cost
                            and (o.accuracy > t.accuracy or o.cost < t.cost)
                            for o in self.trials)]  # fmt: skip
        return sorted(front, key=lambda t: t.cost)

    def to_dict(self) -> dict[str, Any]:
        best = self.best
        return {
            "method": self.method,
            "metric": self.metric,
            "budget": None if self.budget is None else {**self.budget.__dict__,
                                                         "describe": self.budget.describe()},
            "original_cost": self.original_cost,
            "original_accuracy": self.original_accuracy,
            "best": None if best is None else best.to_dict(),
            "pareto": [t.number for t in self.pareto()],
            "trials": [t.to_dict() for t in self.trials],
            "failed": self.failed,
            "cpu_minutes": self.cpu_seconds / 60,
            "wall_seconds": self.wall_seconds,
        }  # fmt: skip

    def format(self) -> str:
        head = f"{self.method} search, {len(self.trials)} trials"
        if self.budget is not None:
            head += f", budget {self.budget.describe()}"
        lines = [head + f" ({self.cpu_seconds / 60:.1f} CPU-minutes here)"]
        if self.original_accuracy is not None:
            lines.append(f"  original: top-1 {100 * self.original_accuracy:.2f}%")
        best = self.best
        if best is None:
            lines.append("  no trial met the budget")
        else:
            lines.append(f"  best: trial {best.number}, top-1 {100 * best.accuracy:.2f}%, "
                         f"{best.reduction:.2f}x fewer {self.metric}")  # fmt: skip
            width = max(len(n) for n in best.settings) if best.settings else 5
            for name, r in best.settings.items():
                lines.append(f"    {name:<{width}}  remove {100 * r:5.1f}%")
        front = self.pareto()
        if len(front) > 1:
            lines.append("  Pareto front (reduction, top-1): " + ", ".join(
                f"{t.reduction:.2f}x {100 * t.accuracy:.2f}%" for t in front))  # fmt: skip
        if self.failed:
            lines.append(f"  {self.failed} trial(s) failed (a worker died or a build failed)")
        return "\n".join(lines)


def budget_ratios(
    space: Space, preference: dict[str, float], budget: Budget, reference: float,
    measure: Callable[[nn.Module], float] | None = None, iterations: int = 8,
) -> dict[str, float] | None:  # fmt: skip
    """Ratios following ``preference`` that meet ``budget``: predicted for counted metrics,
    by bisection over measured latency for ``latency`` (``reference``: the original's)."""
    target = reference / budget.reduction
    if not budget.measured:
        target *= 1 - 1e-4  # margin for the prediction's rounding
        return scale_to_budget(space, preference, target, budget.metric)
    assert measure is not None
    # latency: start from the FLOPs scaling that matches the same reduction, then bisect
    # on the scale with the model timed at each step
    pref = {n: min(1.0, max(0.0, preference.get(n, 0.0))) for n in space.names}
    top = 1.0 / min((p for p in pref.values() if p > 0), default=1.0)

    def settings(s: float) -> dict[str, Any]:
        return {n: space.setting(n, min(1.0, s * p)) for n, p in pref.items() if p > 0}

    if measure(space.build(settings(top))) > target:
        return None
    lo, hi = 0.0, top
    for _ in range(iterations):
        mid = (lo + hi) / 2
        if measure(space.build(settings(mid))) <= target:
            hi = mid
        else:
            lo = mid
    return settings(hi)


def reachable(space: Space, budget: Budget, reference: float,
              measure: Callable[[nn.Module], float] | None = None) -> float:  # fmt: skip
    """The largest reduction of the budget's metric the space can reach (every group at
    ``max_ratio``)."""
    most = {n: space.setting(n, 1.0) for n in space.names}
    if budget.measured:
        assert measure is not None
        return reference / measure(space.build(most))
    return reference / space.cost(most, budget.metric)


def require_reachable(
    space: Space, budget: Budget, reference: float | None = None,
    measure: Callable[[nn.Module], float] | None = None,
) -> None:  # fmt: skip
    """Raise :class:`ConfigError` naming the closest reachable reduction when ``space``
    cannot meet ``budget`` (``reference``: the original's cost; predicted when omitted)."""
    if reference is None:
        reference = space.measure(space.model, budget)
    most = reachable(space, budget, reference, measure)
    if most < budget.reduction * (0.999 if not budget.measured else 1.0):
        raise ConfigError(
            f"the budget ({budget.describe()}) cannot be met with {space.limit_text()}; the "
            f"closest reachable is {most:.2f}x fewer (allow more compression or lower the "
            "reduction)"
        )


def _open_study(
    optuna: Any, storage: str | None, study_name: str, directions: list[str], sampler: Any,
    heartbeat: int, attempts: int = 6,
) -> Any:  # fmt: skip
    """The study, created or joined. Workers starting together race to create the schema and
    the study in a fresh database; the loser's error is retried after a short wait."""
    if storage is None:
        return optuna.create_study(directions=directions, sampler=sampler)
    import inspect
    import warnings

    from optuna import storages

    # Optuna 4.9 renamed the stale-trial hook; take whichever this version has
    params = inspect.signature(storages.RDBStorage.__init__).parameters
    last: Exception | None = None
    for attempt in range(attempts):
        try:
            with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                if "heartbeat_stale_trial_callback" in params:
                    hook = {"heartbeat_stale_trial_callback":
                            storages.RetryHeartbeatStaleTrialCallback(max_retry=2)}  # fmt: skip
                else:
                    hook = {"failed_trial_callback": storages.RetryFailedTrialCallback(2)}
                store = storages.RDBStorage(storage, heartbeat_interval=heartbeat,
                                            grace_period=3 * heartbeat, **hook)  # fmt: skip
            return optuna.create_study(storage=store, study_name=study_name,
                                       directions=directions, sampler=sampler,
                                       load_if_exists=True)  # fmt: skip
        except ValueError as exc:  # an existing study with other directions
            raise ConfigError(f"study {study_name!r} in {storage}: {exc}") from None
        except Exception as exc:  # sqlalchemy's: a bad URL, an unreachable server, a race
            last = exc
            text = str(exc)
            if "UNIQUE constraint" in text or "already exists" in text or "locked" in text:
                time.sleep(0.2 * (attempt + 1))
                continue
            break
    raise ConfigError(f"cannot open the study storage {storage!r}: "
                      f"{str(last).splitlines()[0]}") from None  # fmt: skip


def search(
    model: nn.Module,
    space: Space,
    evaluator: Callable[[nn.Module], float],
    budget: Budget | None = None,
    *,
    trials: int = 30,
    sampler: str = "tpe",
    storage: str | None = None,
    study_name: str = "squeezer-search",
    seed: int = 0,
    timeout: float | None = None,
    progress: bool | None = None,
    worker: str = "",
    heartbeat: int = 10,
) -> SearchResult:
    """Search per-group channel settings with Optuna.

    Args:
        model: the trained network (unchanged).
        space: its :class:`ChannelSpace`.
        evaluator: scores a built model, higher is better (e.g. :class:`Evaluator`).
        budget: what the result must meet; required for ``tpe`` and ``random``, optional for
            ``nsga2`` (then ``best`` is the most accurate front point within it).
        trials: trials this call runs (other workers add theirs to a shared study).
        sampler: ``tpe``, ``random`` or ``nsga2``.
        storage: an Optuna storage URL (``sqlite:///search.db``) shared by workers; None:
            in memory.
        study_name: the study in that storage; workers with the same name share it.
        seed: the sampler's seed (give each worker its own).
        timeout: stop starting trials after this many seconds.
        progress: a progress bar (default: when standard error is a terminal).
        worker: a label stored with each trial this call runs.
        heartbeat: seconds between a running trial's heartbeats in a shared storage; a trial
            silent for three of them counts as its worker dead.

    Returns:
        A :class:`SearchResult` over every finished trial of the study.

    Raises:
        ConfigError: an unknown sampler, a missing budget, a budget the space cannot reach
            (the message says the closest reachable), or storage that cannot be opened.
    """
    import optuna

    if sampler not in SAMPLERS:
        raise ConfigError(f"search: sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
    if budget is None and sampler != "nsga2":
        raise ConfigError(f"search: the {sampler} sampler needs a budget")
    metric = budget.metric if budget is not None else "flops"
    probe = budget if budget is not None else Budget(metric)

    def measure(m: nn.Module) -> float:
        return space.measure(m, probe)

    reference = measure(space.model)
    if budget is not None:
        require_reachable(space, budget, reference, measure)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    kind = {"tpe": optuna.samplers.TPESampler, "random": optuna.samplers.RandomSampler,
            "nsga2": optuna.samplers.NSGAIISampler}[sampler]  # fmt: skip
    directions = ["maximize", "minimize"] if sampler == "nsga2" else ["maximize"]
    study = _open_study(optuna, storage, study_name, directions, kind(seed=seed), heartbeat)
    cpu0, wall0 = time.process_time(), time.perf_counter()

    def objective(trial: Any) -> Any:
        t0 = time.perf_counter()
        if sampler == "nsga2":
            settings = {n: space.setting(n, trial.suggest_float(n, 0.0, 1.0)) for n in space.names}
        else:
            pref = {n: trial.suggest_float(n, 0.0, 1.0) for n in space.names}
            if not any(pref.values()):
                pref = dict.fromkeys(space.names, 1.0)
            scaled = budget_ratios(space, pref, probe, reference, measure)
            if scaled is None:  # cannot happen once reachable() passed, but never guess
                raise optuna.TrialPruned("preference cannot meet the budget")
            settings = scaled
        built = space.build(settings)
        cost = measure(built)
        accuracy = evaluator(built)
        trial.set_user_attr("settings", settings)
        trial.set_user_attr("cost", cost)
        trial.set_user_attr("seconds", time.perf_counter() - t0)
        trial.set_user_attr("worker", worker)
        return (accuracy, cost) if sampler == "nsga2" else accuracy

    show = sys.stderr.isatty() if progress is None else progress
    study.optimize(objective, n_trials=trials, timeout=timeout, show_progress_bar=show,
                   catch=(RuntimeError,))  # fmt: skip
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    result = SearchResult(
        method=f"optuna-{sampler}", metric=metric, budget=budget, original_cost=reference,
        original_accuracy=evaluator(copy.deepcopy(space.model)), cpu_seconds=cpu,
        wall_seconds=wall,
    )  # fmt: skip
    states = optuna.trial.TrialState
    for t in study.get_trials(deepcopy=False):
        if t.state == states.FAIL:
            result.failed += 1
        if t.state != states.COMPLETE or "cost" not in t.user_attrs:
            continue
        acc = t.values[0]
        cost = float(t.user_attrs["cost"])
        result.trials.append(TrialResult(
            number=t.number, settings=dict(t.user_attrs["settings"]), accuracy=float(acc),
            cost=cost, reduction=reference / cost if cost else math.inf,
            seconds=float(t.user_attrs.get("seconds", 0.0)),
            worker=str(t.user_attrs.get("worker", "")),
        ))  # fmt: skip
    return result


def uniform(space: Space, budget: Budget, evaluator: Callable[[nn.Module], float]) -> TrialResult:
    """The baseline every search is judged against: one ratio for every group, the smallest
    that meets the budget, scored by the same evaluator."""

    def measure(m: nn.Module) -> float:
        return space.measure(m, budget)

    reference = measure(space.model)
    t0 = time.perf_counter()
    settings = budget_ratios(space, dict.fromkeys(space.names, 1.0), budget, reference, measure)
    if settings is None:
        raise ConfigError(f"uniform: the budget ({budget.describe()}) cannot be met")
    built = space.build(settings)
    cost = measure(built)
    return TrialResult(-1, settings, evaluator(built), cost, reference / cost,
                       time.perf_counter() - t0, "uniform")  # fmt: skip
