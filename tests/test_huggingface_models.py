"""Real architectures from a library users already have: Hugging Face ``transformers`` image
and text models built from configs with random weights (no download). Optional: skipped
unless ``transformers`` is installed (``pip install -e ".[hf]"``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import squeezer as sq

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
