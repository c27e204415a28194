"""Real architectures from a library users already have: Hugging Face ``transformers`` image
and text models built from configs with random weights (no download). Optional: skipped
unless ``transformers`` is installed (``pip install -e ".[hf]"``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import squeezer as sq
from helpers import bn_statistics_

transformers = pytest.importorskip("transformers")


class Logits(torch.nn.Module):
    """The model's logits as a plain tensor (Hugging Face returns an output object)."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x).logits


def _bert() -> Logits:
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=128, max_position_embeddings=32, num_labels=3,
    )  # fmt: skip
    return Logits(transformers.BertForSequenceClassification(config)).eval()


def _mobilenet() -> Logits:
    torch.manual_seed(0)
    config = transformers.MobileNetV2Config(
        image_size=32, depth_multiplier=0.35, num_labels=5, num_channels=3
    )
    return Logits(transformers.MobileNetV2ForImageClassification(config)).eval()


def _exact(a: torch.nn.Module, b: torch.nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        assert torch.equal(a(x), b(x))


def test_bert_factorized_pruned_shared_and_reloaded(tmp_path: Path) -> None:
    model = _bert()
    ids = torch.randint(0, 100, (2, 16))
    report = sq.factorize_(model, sq.factorization.SVD(rank="flops:2", layers=("*.dense",)), ids)
    assert report.converted
    sq.prune_(model, sq.pruning.Magnitude(sparsity=0.5, layers=("*.encoder.*",)))
    sq.quantize_(model, sq.quantization.KMeansSharing(bits=4, layers=("*.encoder.*",)))
    path = sq.save(model, tmp_path / "bert.sqz")
    _exact(sq.core.baked_copy(model).eval(), sq.load(path, model=_bert()), ids)


def test_mobilenet_v2_factorized_and_reloaded(tmp_path: Path) -> None:
    model = _mobilenet()
    x = torch.randn(2, 3, 32, 32)
    report = sq.factorize_(model, sq.factorization.Tucker(rank="flops:2", n_iter_max=2), x)
    # Its forward reads conv.stride, kernel_size and dilation (TF padding): the factor blocks
    # keep them, so the convolutions convert; depthwise ones are left, with the reason.
    assert report.converted
    assert all(r.converted or r.reason for r in report.layers)
    with torch.no_grad():
        assert model(x).shape == (2, 5)
    path = sq.save(model, tmp_path / "mnv2.sqz")
    _exact(model, sq.load(path, model=_mobilenet()), x)


def _vit() -> Logits:
    torch.manual_seed(0)
    config = transformers.ViTConfig(
        image_size=32, patch_size=8, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=128, num_labels=4, num_channels=3,
    )  # fmt: skip
    return Logits(transformers.ViTForImageClassification(config)).eval()


def test_vit_factorized_and_reloaded(tmp_path: Path) -> None:
    model = _vit()
    x = torch.randn(2, 3, 32, 32)
    linear = sq.factorize_(model, sq.factorization.SVD(rank="flops:2"), x)
    assert len(linear.converted) == len(linear.layers) == 13  # every Linear of the 2 blocks
    # The patch embedding reads projection.weight.dtype: the factor block answers it.
    conv = sq.factorize_(model, sq.factorization.Tucker(rank="flops:2", n_iter_max=2), x)
    assert [r.name for r in conv.converted] == ["inner.vit.embeddings.patch_embeddings.projection"]
    path = sq.save(model, tmp_path / "vit.sqz")
    _exact(model, sq.load(path, model=_vit()), x)


def _resnet() -> Logits:
    torch.manual_seed(0)
    config = transformers.ResNetConfig(
        embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1], num_labels=3
    )
    model = Logits(transformers.ResNetForImageClassification(config))
    return bn_statistics_(model)


def test_hf_resnet_channels_prune_through_export_exactly(tmp_path: Path) -> None:
    import copy

    from squeezer.surgery import apply_plan, zero_channels_

    model = _resnet()
    x = torch.randn(2, 3, 32, 32)
    plan = sq.pruning.plan_channels(model, x[:1], ratio=0.5)
    assert plan.graph.tracer == "export" and not plan.graph.warnings
    pruned = apply_plan(model, plan).eval()
    conv = pruned.inner.resnet.encoder.stages[1].layers[0].layer[0].convolution
    assert conv.out_channels == 4  # a bottleneck of 8 halved
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), zero_channels_(copy.deepcopy(model), plan)(x))
    _exact(pruned, sq.load(sq.save(pruned, tmp_path / "r.sqz"), model=_resnet()), x)


def test_bert_hidden_size_and_mlp_channels_prune_through_export(tmp_path: Path) -> None:
    model = _bert()
    ids = torch.randint(0, 100, (2, 16))
    report = sq.prune_(model, sq.pruning.ChannelPruning(ratio=0.25), ids[:1])
    bert = model.inner.bert
    assert bert.embeddings.word_embeddings.weight.shape == (100, 48)  # hidden 64 -> 48
    assert bert.encoder.layer[0].intermediate.dense.out_features == 96
    assert bert.encoder.layer[0].attention.self.query.out_features == 64  # heads left whole
    assert report.flops_after < report.flops_before
    with torch.no_grad():
        assert model(ids).shape == (2, 3)
    _exact(model, sq.load(sq.save(model, tmp_path / "b.sqz"), model=_bert()), ids)


def test_bert_heads_by_gradient_importance_and_reload(tmp_path: Path) -> None:
    model = _bert()
    ids = torch.randint(0, 100, (4, 16))
    data = [(ids, torch.tensor([0, 1, 2, 0]))]
    config = sq.pruning.HeadPruning(heads=0.5, mlp=0.25, importance="gradient")
    report = sq.prune_(model, config, ids[:1], data=data)
    assert [(a["heads"], a["kept"]) for a in report.attention] == [(2, 1), (2, 1)]
    layer = model.inner.bert.encoder.layer[0]
    assert layer.attention.self.num_attention_heads == 1
    assert layer.attention.self.query.out_features == 32
    assert layer.attention.output.dense.in_features == 32
    assert layer.intermediate.dense.out_features == 96
    _exact(model, sq.load(sq.save(model, tmp_path / "h.sqz"), model=_bert()), ids)


def test_gradient_importance_ranks_a_silenced_head_last() -> None:
    model = _bert()
    attn = model.inner.bert.encoder.layer[0].attention
    with torch.no_grad():  # head 1's output columns zeroed: it cannot matter
        attn.output.dense.weight[:, 32:] = 0
    ids = torch.randint(0, 100, (4, 16))
    config = sq.pruning.HeadPruning(heads=0.5, importance="gradient", layers=("*.layer.0.*",))
    report = sq.prune_(model, config, ids[:1], data=[(ids, torch.tensor([0, 1, 2, 0]))])
    assert report.attention[0]["removed"] == [1]


def test_hf_vit_heads_prune_and_reload(tmp_path: Path) -> None:
    model = _vit()
    x = torch.randn(2, 3, 32, 32)
    report = sq.prune_(model, sq.pruning.HeadPruning(heads=0.5, mlp=0.5), x[:1])
    assert report.flops_after < 0.7 * report.flops_before
    assert {(a.heads, a.head_dim) for a in sq.pruning.find_attention(model)} == {(1, 32)}
    _exact(model, sq.load(sq.save(model, tmp_path / "v.sqz"), model=_vit()), x)


def test_head_pruning_says_when_it_finds_no_block() -> None:
    with pytest.raises(sq.errors.ModelError, match="no attention or MLP block"):
        sq.prune_(_resnet(), sq.pruning.HeadPruning(heads=0.5), torch.randn(1, 3, 32, 32))


def test_a_tied_decoder_is_left_tied_unless_named(tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=100, hidden_size=64, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=128, max_position_embeddings=32,
    )  # fmt: skip
    model = Logits(transformers.BertForMaskedLM(config)).eval()
    ids = torch.randint(0, 100, (2, 16))
    report = sq.factorize_(model, sq.factorization.SVD(rank="flops:2"), ids)
    skipped = {r.name: r.reason for r in report.layers if not r.converted}
    assert (
        "tied to inner.bert.embeddings.word_embeddings.weight"
        in skipped["inner.cls.predictions.decoder"]
    )
    decoder = model.inner.cls.predictions.decoder
    assert decoder.weight is model.inner.bert.embeddings.word_embeddings.weight
    named = sq.factorization.SVD(rank="flops:2", layers=("inner.cls.predictions.decoder",))
    assert [r.name for r in sq.factorize_(model, named, ids).converted] == [
        "inner.cls.predictions.decoder"
    ]
    model.eval()
    fresh = Logits(transformers.BertForMaskedLM(config)).eval()
    _exact(model, sq.load(sq.save(model, tmp_path / "mlm.sqz"), model=fresh).eval(), ids)
