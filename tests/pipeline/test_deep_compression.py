"""The Deep Compression pipeline on a small problem: stages shrink the file, numbers add up."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import squeezer as sq
from squeezer.errors import ConfigError
from squeezer.pipeline import DeepCompression, format_result, run_deep_compression


@pytest.fixture(scope="module")
def result():
    train, test = sq.data.load("digits")
    torch.manual_seed(0)
    model = sq.models.create("lenet300")
    sq.fit(model, train, epochs=6, lr=0.1, batch_size=64)
    recipe = DeepCompression(prune_rounds=2, prune_epochs=2, share_epochs=1, batch_size=64)
    return model, run_deep_compression(model, train, test, recipe)


def test_stages_shrink_and_rate_is_file_based(result) -> None:
    _, r = result
    sizes = [s.size_bytes for s in r.stages]
    assert sizes == sorted(sizes, reverse=True) and len(sizes) == 4
    assert r.size_bytes == len(r.sqz) == sizes[-1]
    assert r.baseline_bytes == 266_610 * 4
    assert r.compression_rate == pytest.approx(r.baseline_bytes / len(r.sqz))
    assert r.compression_rate > 30  # paper sparsities with 5-bit sharing and Huffman
    assert r.top1_before > 0.85 and r.top1_after > 0.8


def test_file_holds_the_compressed_model(result, tmp_path: Path) -> None:
    model, r = result
    path = tmp_path / "m.sqz"
    path.write_bytes(r.sqz)
    loaded = sq.load(path)
    _, test = sq.data.load("digits")
    assert sq.evaluate(loaded, test)["top1"] == pytest.approx(r.top1_after)
    baked = sq.surgery.baked_copy(model)
    assert all(torch.equal(a, loaded.state_dict()[k]) for k, a in baked.state_dict().items())
    density = {layer["name"]: layer["density"] for layer in r.layers}
    assert density["fc1.weight"] == pytest.approx(0.08, abs=0.001)  # Han's 8% for fc1


def test_report(result) -> None:
    _, r = result
    d = r.to_dict()
    for key in ("compression_rate", "size_bytes", "top1_before", "top1_after", "stages", "layers"):
        assert key in d
    text = format_result(r)
    assert "lenet300 compressed" in text and "+ Huffman coding" in text and "fc1.weight" in text
    fc1 = next(layer for layer in r.layers if layer["name"] == "fc1.weight")
    assert fc1["weight_bits"] == 5
    assert fc1["index_entropy"] <= fc1["huffman_index_bits"] < fc1["index_entropy"] + 1


def test_recipe_from_yaml_rejects_unknown_keys(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("sparsity:\n  fc1: 0.95\nfc_bits: 4\nprune_epochs: 1\n")
    recipe = DeepCompression.from_yaml(path)
    assert recipe.sparsity == {"fc1": 0.95} and recipe.fc_bits == 4
    assert recipe.pruning("lenet300", ["fc1", "fc2", "fc3"]).per_layer == {
        "fc1": 0.95,
        "fc2": 0.9,
        "fc3": 0.9,
    }
    assert DeepCompression().pruning("lenet5", ["conv1"]).per_layer["conv2"] == 0.88
    path.write_text("fc_bit: 4\n")
    with pytest.raises(ConfigError, match="unknown key"):
        DeepCompression.from_yaml(path)
    with pytest.raises(ConfigError, match="bits"):
        DeepCompression(fc_bits=9)


@pytest.mark.parametrize("name", ["lenet300", "lenet5"])
def test_example_recipes_match_the_benchmark(name: str) -> None:
    import importlib.util
    import sys

    root = Path(__file__).resolve().parents[2]
    recipe = DeepCompression.from_yaml(root / "examples" / "recipes" / f"{name}-tuned.yaml")
    sys.path.insert(0, str(root / "benchmarks"))
    try:
        spec = importlib.util.spec_from_file_location(
            "dc_bench", root / "benchmarks" / "deep_compression.py"
        )
        bench = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(bench)
    finally:
        sys.path.remove(str(root / "benchmarks"))
    assert bench.RECIPES[(name, "tuned")] == recipe
