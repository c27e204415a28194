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
def test_the_preset_and_the_shipped_paper_recipe_agree(name: str) -> None:
    shipped = sq.pipeline.load_recipe(f"deep-compression-{name}")
    model = sq.models.create(name)
    names = [n for n, _ in sq.core.weight_layers(model)]
    preset = {
        "lenet300": dict(prune_epochs=4, share_epochs=3),
        "lenet5": dict(prune_epochs=3, share_epochs=2),
    }
    assert DeepCompression(**preset[name]).to_recipe(name, names).stages == shipped.stages


def test_every_example_and_shipped_recipe_validates() -> None:
    root = Path(__file__).resolve().parents[2] / "examples" / "recipes"
    files = sorted(root.glob("*.yaml"))
    assert len(files) >= 4
    for path in files:
        recipe = sq.pipeline.Recipe.from_yaml(path)
        assert recipe.stages[-1].tag == "code", path
    for name in sq.pipeline.builtin_recipes():
        assert sq.pipeline.load_recipe(name).name == name


def test_bad_recipes_are_refused_before_anything_runs(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    cases = {
        "stages: []\n": "non-empty list",
        "stages:\n  - shrink: {}\n": "unknown stage 'shrink'",
        "stages:\n  - share: {fc_bits: 12}\n": "bits",
        "stages:\n  - factorize: {method: magic}\n": "method must be one of",
        "stages:\n  - prune: {sparsity: 0.5, rounds: 0}\n": "rounds must be",
        "stages:\n  - prune: {sparsity: 0.5}\nbatch: 3\n": "unknown key",
        "stages:\n  - channel-prune: {criterion: magic}\n": "unknown criterion",
    }
    for text, message in cases.items():
        path.write_text(text)
        with pytest.raises(ConfigError, match=message):
            sq.pipeline.Recipe.from_yaml(path)


def test_sparse_vd_recipe_end_to_end(tmp_path: Path) -> None:
    """sparse VD, dead units folded and removed, sharing, Huffman: the file holds the model."""
    from squeezer.pipeline import Recipe, run_recipe

    train, test = sq.data.load("digits")
    torch.manual_seed(0)
    model = sq.models.create("lenet300")
    sq.fit(model, train, epochs=2, lr=0.1, batch_size=64)
    recipe = Recipe.from_dict({"name": "vd", "batch_size": 64, "stages": [
        {"sparse-vd": {"epochs": 1, "lr": 0.01, "warmup": 0, "threshold": 0.0}},
        {"fold-dead": {"pairs": [["fc1", "fc2"], ["fc2", "fc3"]]}},
        {"channel-prune": {"criterion": "l1", "threshold": 1e-12, "layers": ["fc1", "fc2"]}},
        {"share": {"fc_bits": 4, "bias_bits": 4}},
        {"code": {"coding": "huffman"}},
    ]})  # fmt: skip
    result = run_recipe(model, train, test, recipe)
    tags = [r["stage"] for r in result.reports]
    assert tags[0] == "sparse-vd" and "fold-dead" in tags
    assert result.compression_rate > 4
    path = tmp_path / "vd.sqz"
    path.write_bytes(result.sqz)
    back = sq.load(path)
    x = torch.randn(5, *test.input_shape)
    assert torch.equal(back(x), sq.surgery.baked_copy(model).eval()(x))
    assert back.fc1.out_features == model.fc1.out_features <= 300
