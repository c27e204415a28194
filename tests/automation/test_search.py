"""Policy search with Optuna: budgets met, Pareto fronts, shared storage and dead workers."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from squeezer.analysis import count_flops
from squeezer.automation import Budget, search, uniform
from squeezer.errors import ConfigError

HERE = Path(__file__).parent.parent  # tests/, where searchkit lives


def test_tpe_trials_all_meet_the_budget(setup) -> None:
    model, space, evaluator = setup
    x = torch.zeros(1, 1, 8, 8)
    base = count_flops(model, (x,))[0]
    result = search(model, space, evaluator, Budget("flops", 2.0), trials=6, seed=0)
    assert len(result.trials) == 6 and result.failed == 0
    for t in result.trials:
        assert t.cost <= base / 2  # counted on the built model, not predicted
        assert t.reduction == pytest.approx(base / t.cost)
        assert set(t.settings) <= set(space.names)
        assert all(0 <= r <= 0.75 for r in t.settings.values())
    best = result.best
    assert best is not None and best.accuracy == max(t.accuracy for t in result.trials)
    # scaled to the budget, not far below it
    assert all(t.reduction < 2.3 for t in result.trials)
    assert "best: trial" in result.format() and result.to_dict()["best"]["number"] == best.number
    built = space.build(best.settings)
    assert count_flops(built, (x,))[0] == best.cost


def test_uniform_baseline_one_ratio_everywhere(setup) -> None:
    _, space, evaluator = setup
    u = uniform(space, Budget("flops", 2.0), evaluator)
    assert len(set(round(r, 9) for r in u.settings.values())) == 1
    assert 2.0 <= u.reduction < 2.3


def test_nsga2_keeps_a_pareto_front(setup) -> None:
    model, space, evaluator = setup
    result = search(model, space, evaluator, None, trials=8, sampler="nsga2", seed=1)
    front = result.pareto()
    assert front and all(a.cost <= b.cost for a, b in itertools.pairwise(front))
    for t in front:
        assert not any(o.accuracy > t.accuracy and o.cost < t.cost for o in result.trials)
    # with no budget every trial counts; best is the most accurate
    assert result.best.accuracy == max(t.accuracy for t in result.trials)


def test_unreachable_budget_names_the_closest(setup) -> None:
    model, space, evaluator = setup
    with pytest.raises(ConfigError, match=r"closest reachable is \d+\.\d+x"):
        search(model, space, evaluator, Budget("flops", 1000.0), trials=1)
    with pytest.raises(ConfigError, match="needs a budget"):
        search(model, space, evaluator, None, trials=1)
    with pytest.raises(ConfigError, match="sampler"):
        search(model, space, evaluator, Budget(), trials=1, sampler="cmaes")
    with pytest.raises(ConfigError, match="reduction must be > 1"):
        Budget("flops", 0.5)


def test_storage_keeps_trials_between_calls(setup, tmp_path) -> None:
    model, space, evaluator = setup
    url = f"sqlite:///{tmp_path / 'study.db'}"
    search(model, space, evaluator, Budget("params", 2.0), trials=2, storage=url, seed=0)
    again = search(model, space, evaluator, Budget("params", 2.0), trials=2, storage=url, seed=1)
    assert len(again.trials) == 4


def test_bad_storage_is_a_clear_error(setup, tmp_path) -> None:
    model, space, evaluator = setup
    with pytest.raises(ConfigError, match="cannot open the study storage"):
        search(model, space, evaluator, Budget(), trials=1,
               storage=f"sqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'x.db'}")  # fmt: skip
    with pytest.raises(ConfigError, match="cannot open the study storage"):
        search(model, space, evaluator, Budget(), trials=1, storage="nosuchdb://x")


WORKER = """
import os, sys
sys.path.insert(0, {here!r})
import searchkit
from squeezer.automation import Budget, search
model, train, val = searchkit.trained()
space, evaluator = searchkit.space_and_evaluator(model, train, val)
die = {die!r}
def scored(m):
    if die:
        import time; time.sleep(2.5)  # long enough for a heartbeat to be recorded
        os._exit(3)
    return evaluator(m)
search(model, space, scored, Budget("flops", 2.0), trials={trials}, storage={url!r},
       seed={seed}, worker={name!r}, heartbeat=1)
"""


def _worker(url: str, name: str, seed: int, trials: int, die: bool = False) -> subprocess.Popen:
    code = WORKER.format(here=str(HERE), die=die, trials=trials, url=url, seed=seed, name=name)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE)


def test_two_workers_share_one_sqlite_study(setup, tmp_path) -> None:
    model, space, evaluator = setup
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    procs = [_worker(url, f"w{i}", i, 2) for i in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()[-2000:]
    result = search(model, space, evaluator, Budget("flops", 2.0), trials=0, storage=url)
    assert len(result.trials) == 4
    assert sorted({t.worker for t in result.trials}) == ["w0", "w1"]


def test_a_dead_worker_s_trial_is_failed_and_retried(setup, tmp_path) -> None:
    model, space, evaluator = setup
    url = f"sqlite:///{tmp_path / 'dead.db'}"
    dead = _worker(url, "dies", 0, 1, die=True)
    dead.communicate(timeout=300)
    assert dead.returncode == 3
    time.sleep(3.5)  # past the grace period of three missed heartbeats
    result = search(model, space, evaluator, Budget("flops", 2.0), trials=2, storage=url,
                    seed=5, heartbeat=1, worker="survivor")  # fmt: skip
    assert result.failed == 1  # the dead worker's trial, marked failed
    assert len(result.trials) == 2 and {t.worker for t in result.trials} == {"survivor"}
    import optuna

    study = optuna.load_study(study_name="squeezer-search", storage=url)
    failed = [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]
    retried = [t for t in study.trials if t.system_attrs.get("failed_trial") == failed[0].number]
    assert retried and retried[0].params == failed[0].params  # re-run with its parameters
