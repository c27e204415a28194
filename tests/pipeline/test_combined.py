"""A5: the shipped combined recipe (channels, factorization, distillation, 8-bit QAT, coding)
end to end, with FLOPs and latency after every stage."""

from __future__ import annotations

from pathlib import Path

import torch

import squeezer as sq
from squeezer.pipeline import load_recipe, run_recipe


def test_combined_lenet5_on_mnist(tmp_path: Path, real_data: Path) -> None:
    train, test = sq.data.load("mnist", real_data)
    train, test = train.subset(3000), test.subset(1000)
    torch.manual_seed(0)
    model = sq.models.create("lenet5")
    sq.fit(model, train, epochs=2, lr=0.05, batch_size=64)
    recipe = load_recipe("combined-lenet5")
    result = run_recipe(model, train, test, recipe, latency_batch=1, min_run_time=0.05)
    names = [s.name for s in result.stages]
    assert names[0].startswith("baseline") and "Huffman" in names[-1]
    flops = [s.flops for s in result.stages]
    assert flops[1] < flops[0] and flops[2] < flops[1]  # channels, then the factorized fc1
    assert all(s.latency_ms and s.latency_ms > 0 and s.speedup for s in result.stages)
    sizes = [s.size_bytes for s in result.stages]
    assert sizes[-1] < sizes[0] / 8  # 8-bit codes of a smaller model, Huffman-coded
    tags = [r["stage"] for r in result.reports]
    assert tags[:4] == ["channel-prune", "factorize", "distill", "quantize"]
    path = tmp_path / "c.sqz"
    path.write_bytes(result.sqz)
    back = sq.load(path)
    assert abs(sq.evaluate(back, test)["top1"] - result.top1_after) < 1e-9
    text = result.format()
    assert "FLOPs" in text and "speedup" in text
    d = result.to_dict()
    assert d["stages"][1]["flops"] == flops[1]
