"""The user's own network through every method and the .sqz file, in Python and from the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

import squeezer as sq
from squeezer.cli import main
from user_nets import UserNet, make_net


def _same(a: torch.nn.Module, b: torch.nn.Module, x: torch.Tensor) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    with torch.no_grad():
        assert torch.equal(a.eval()(x), b.eval()(x))


def test_user_net_pruned_factorized_shared_saved_and_loaded_bit_exactly(tmp_path: Path) -> None:
    model = make_net()
    x = torch.randn(2, 1, 28, 28)
    channels = sq.prune_(model, sq.pruning.ChannelPruning(ratio=0.25), x[:1])
    assert channels.params_after < channels.params_before
    factor = sq.factorize_(model, sq.factorization.Tucker(rank=0.5, layers=("head.*",)), x[:1])
    assert [r.name for r in factor.converted] == ["head.0"]
    low = sq.factorize_(model, sq.factorization.SVD(rank=8, layers=("fc1",)), x[:1])
    assert low.converted
    sq.prune_(model, sq.pruning.Magnitude(sparsity=0.5))
    shared = sq.quantize_(model, sq.quantization.KMeansSharing(bits=4))
    assert all(v["clusters"] <= 15 for v in shared.values())
    path = sq.save(model, tmp_path / "user.sqz", input_shape=(1, 28, 28))
    with pytest.raises(sq.SqueezerError, match="model="):
        sq.load(path)
    loaded = sq.load(path, model=UserNet())
    _same(sq.core.baked_copy(model), loaded, x)
    assert loaded.input_shape == (1, 28, 28)
    with pytest.raises(sq.SqueezerError, match="does not have"):
        sq.load(path, model=sq.models.create("lenet300"))  # another architecture
    ckpt = sq.save_checkpoint(model, tmp_path / "user.pt")
    _same(loaded, sq.load_checkpoint(ckpt, model=UserNet()), x)


def test_user_net_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    shape = ["--input-shape", "1,28,28"]
    a, b = tmp_path / "a.sqz", tmp_path / "b.sqz"
    argv = ["prune", "user_nets:make_net", *shape, "--ratio", "0.25", "--out", str(a)]
    assert main([*argv, "--batch-sizes", "1", "--min-run-time", "0.01"]) == 0
    argv = ["factorize", str(a), "--model", "user_nets:make_net", "--method", "tucker,svd"]
    assert main([*argv, "--out", str(b), "--batch-sizes", "1", "--min-run-time", "0.01"]) == 0
    capsys.readouterr()
    argv = ["measure", str(b), "--model", "user_nets:make_net", "--no-latency", "--json", "-"]
    assert main(argv) == 0
    measured = json.loads(capsys.readouterr().out)  # tables go to stderr with --json -
    assert measured["params"] < sum(p.numel() for p in make_net().parameters())
    x = torch.randn(2, 1, 28, 28)
    python = sq.load(b, model=UserNet())
    assert any(isinstance(m, torch.nn.Sequential) for m in python.modules())
    with torch.no_grad():
        assert python(x).shape == (2, 10)
    code = main(["measure", str(b), "--no-latency"])  # without --model: a clear error
    assert code != 0 and "--model user_nets:make_net" in capsys.readouterr().err


def test_user_net_through_a_recipe(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    recipe = {
        "name": "mixed",
        "batch_size": 64,
        "stages": [
            {"channel-prune": {"ratio": 0.25, "criterion": "l2"}},
            {"factorize": {"method": "svd", "rank": 8, "layers": ["fc1"]}},
            {"prune": {"sparsity": 0.5}},
            {"share": {"bits": 4}},
            {"fine-tune": {"epochs": 1, "lr": 0.01, "weight_decay": 0}},
            {"code": {}},
        ],
    }
    path = tmp_path / "mixed.yaml"
    path.write_text(yaml.safe_dump(recipe))
    out = tmp_path / "m.sqz"
    argv = ["run", str(path), "user_nets:make_net", "--input-shape", "1,28,28"]
    argv += ["--backend", "onnxruntime", "--batch-sizes", "1"]  # timed as exported
    report = tmp_path / "r.json"
    code = main([*argv, "--dataset", "digits", "--out", str(out), "--quiet", "--json", str(report)])
    assert code == 0, capsys.readouterr().err
    result = json.loads(report.read_text())
    assert [s["name"] for s in result["stages"]][1:] == [
        "channel pruning",
        "factorization (SVD)",
        "pruning",
        "+ weight sharing",
        "+ Huffman coding",
    ]
    assert result["size_bytes"] == out.stat().st_size
    timed = result["measurement"]
    assert timed["backend"].startswith("ONNX Runtime") and len(timed["prepare_seconds"]) == 2
    assert [s["batch_size"] for s in timed["speedup"]] == [1]
    assert timed["baseline"]["params"] > timed["params"]  # against the original network
    loaded = sq.load(out, model=UserNet())
    _, test = sq.data.load("digits")
    assert sq.evaluate(loaded, test)["top1"] == pytest.approx(result["top1_after"])


def test_user_transformer_heads_and_channels_prune_and_reload(tmp_path: Path) -> None:
    from user_nets import TinyViT, make_vit

    model = make_vit().eval()
    x = torch.randn(2, 1, 28, 28)
    heads = sq.prune_(model, sq.pruning.HeadPruning(heads=0.5, mlp=0.5), x[:1])
    assert [(a["heads"], a["kept"]) for a in heads.attention] == [(4, 2), (4, 2)]
    assert (model.blocks[0].attn.num_heads, model.blocks[0].attn.qkv.out_features) == (2, 48)
    channels = sq.prune_(model, sq.pruning.ChannelPruning(ratio=0.25), x[:1])
    assert channels.inexact  # the residual stream runs through LayerNorms
    assert model.patch.out_channels == 24 and model.pos.shape == (1, 16, 24)
    assert channels.warnings  # the attention internals are left alone, said once per kind
    assert len(channels.warnings) < 6
    loaded = sq.load(sq.save(model, tmp_path / "vit.sqz"), model=TinyViT())
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_user_transformer_heads_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "vit.sqz"
    argv = ["prune", "user_nets:make_vit", "--input-shape", "1,28,28", "--heads", "0.5"]
    argv += ["--mlp", "0.25", "--out", str(out), "--batch-sizes", "1", "--min-run-time", "0.01"]
    argv += ["--json", "-"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert {a["kept"] for a in result["heads"]["attention"]} == {2}
    from user_nets import TinyViT

    loaded = sq.load(out, model=TinyViT())
    assert loaded.blocks[1].mlp.fc1.out_features == 96
    assert main(["prune", "user_nets:make_vit", "--input-shape", "1,28,28"]) != 0
    assert "give --ratio" in capsys.readouterr().err
