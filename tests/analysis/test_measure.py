"""Counting, FLOPs against a hand count, and the survey's metrics."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import squeezer as sq
from squeezer.analysis import Comparison, count_flops, measure
from squeezer.analysis.measure import flops_without_speed_warnings


def lenet5_flops_by_hand() -> dict[str, int]:
    # one multiply-accumulate = 2 FLOPs; output positions x kernel volume x output channels
    return {
        "conv1": 2 * (24 * 24) * (1 * 5 * 5) * 20,  # 28 -> 24
        "conv2": 2 * (8 * 8) * (20 * 5 * 5) * 50,  # 12 -> 8
        "fc1": 2 * 800 * 500,
        "fc2": 2 * 500 * 10,
    }


def test_lenet5_flops_match_hand_count() -> None:
    model = sq.models.create("lenet5")
    total, per_module = count_flops(model, torch.randn(1, 1, 28, 28))
    hand = lenet5_flops_by_hand()
    assert total == sum(hand.values()) == 4_586_000
    for name, flops in hand.items():
        assert per_module[name] == flops


def _with_known_zeros() -> tuple[nn.Module, int]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 8), nn.ReLU(), nn.Linear(8, 3))
    with torch.no_grad():
        model[0].weight[:, :5] = 0  # 40 zeros
        model[2].bias.zero_()  # 3 zeros
    return model, 43


def test_measure_counts_known_zeros() -> None:
    model, zeros = _with_known_zeros()
    m = measure(model, torch.randn(4, 10), latency=False)
    params = 10 * 8 + 8 + 8 * 3 + 3
    assert m.params == params
    assert m.nonzero_params == params - zeros
    assert m.size_bytes == params * 4
    assert m.flops == 2 * (10 * 8 + 8 * 3)
    rows = {r.name: r for r in m.layers}
    assert (rows["0"].params, rows["0"].nonzero_params, rows["0"].flops) == (88, 48, 160)
    assert (rows["2"].nonzero_params, rows["2"].size_bytes) == (24, 27 * 4)
    assert rows["1"].type == "ReLU" and rows["1"].params == 0


def test_size_counts_buffers_and_dtypes() -> None:
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4)).half()
    m = measure(model, torch.randn(1, 2, 8, 8).half(), latency=False)
    # conv 72 + 4 and BN 4 + 4 params, 4 + 4 running stats at 2 bytes; 1 int64 counter
    assert m.size_bytes == (76 + 8 + 8) * 2 + 8


def test_measure_against_baseline_and_json() -> None:
    base, _ = _with_known_zeros()
    torch.manual_seed(1)
    dense = nn.Sequential(nn.Linear(10, 8), nn.ReLU(), nn.Linear(8, 3))
    pruned, zeros = _with_known_zeros()
    m = measure(pruned, torch.randn(1, 10), baseline=dense, batch_sizes=(1, 4), min_run_time=0.01)
    a, a_star = 115, 115 - zeros
    assert m.comparison is not None
    assert m.comparison.compression_rate == pytest.approx(a / a_star)
    assert m.comparison.index_space_saving == pytest.approx((a - a_star) / a_star)
    assert m.comparison.flops_reduction == pytest.approx(1.0)
    assert [s["batch_size"] for s in m.comparison.speedup] == [1, 4]
    for s in m.comparison.speedup:
        assert s["speedup"] == pytest.approx(s["baseline_ms"] / s["candidate_ms"])
    d = json.loads(m.to_json())
    for key in (
        "params",
        "nonzero_params",
        "flops",
        "size_bytes",
        "latency_ms",
        "compression_rate",
        "index_space_saving",
        "flops_reduction",
        "speedup",
        "baseline",
        "layers",
        "backend",
    ):
        assert key in d
    assert d["latency_ms"] > 0 and d["latency"][1]["batch_size"] == 4
    del base


def test_table_lists_layers_and_total() -> None:
    m = measure(
        sq.models.create("lenet5"), torch.randn(1, 1, 28, 28), batch_sizes=(2,), min_run_time=0.01
    )
    text = str(m)
    for name in ("conv1", "conv2", "fc1", "fc2", "total", "431,080", "4.59M", "batch    2"):
        assert name in text
    assert all(r.latency_ms is not None and r.latency_ms >= 0 for r in m.layers)


def test_warning_when_fewer_flops_bring_no_speed() -> None:
    slow = Comparison(
        compression_rate=2,
        index_space_saving=1,
        compression_rate_bytes=2,
        flops_reduction=3.0,
        speedup=[
            {"batch_size": 1, "threads": 1, "speedup": 0.98},
            {"batch_size": 32, "threads": 1, "speedup": 2.5},
        ],
    )
    warnings = flops_without_speed_warnings(slow)
    assert len(warnings) == 1 and "batch 1" in warnings[0] and "3.00x" in warnings[0]
    same = Comparison(1, 0, 1, 1.0, [{"batch_size": 1, "threads": 1, "speedup": 0.9}])
    assert flops_without_speed_warnings(same) == []


def test_measure_restores_training_mode() -> None:
    model = sq.models.create("lenet300").train()
    measure(model, torch.randn(1, 1, 28, 28), min_run_time=0.01)
    assert model.training
