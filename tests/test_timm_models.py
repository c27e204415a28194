"""Channel and head pruning on timm's own architectures (random weights, no download).

Optional: skipped unless timm is installed (``pip install -e ".[timm]"``; see
``tests/real_libs.py`` for torchvision). Each model prunes through the export tracer, removes
FLOPs, matches the zeroed original where the graph is exact, and its saved file loads into a
freshly created model of the same name.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

import squeezer as sq
from helpers import bn_statistics_
from real_libs import import_timm
from squeezer.analysis.counting import count_flops
from squeezer.surgery import apply_plan, zero_channels_

timm = import_timm()

CASES = {
    # name: (input size, exact against the zeroed original)
    "resnet18": (64, True),
    "mobilenetv3_small_050": (64, True),  # squeeze-excitation, hard-swish
    "efficientnet_b0": (64, True),  # SE with SiLU, BatchNormAct2d
    "regnetx_002": (64, True),  # grouped convolutions
    "convnext_atto": (64, False),  # channels-last LayerNorm, layer scale
    "densenet121": (64, True),  # concatenation of lists
    "vit_tiny_patch16_224": (32, False),  # class token, position embedding, LayerNorm
}


def _create(name: str, size: int) -> torch.nn.Module:
    torch.manual_seed(0)
    kwargs = {"img_size": size} if name.startswith("vit") else {}
    model = timm.create_model(name, num_classes=5, **kwargs)
    return bn_statistics_(model)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_timm_model_prunes_and_reloads(name: str, tmp_path: Path) -> None:
    size, exact = CASES[name]
    model = _create(name, size)
    x = torch.randn(2, 3, size, size)
    plan = sq.pruning.plan_channels(model, x[:1], ratio=0.3)
    assert plan.graph.tracer == "export"
    pruned = apply_plan(model, plan).eval()
    before, after = count_flops(model, (x[:1],))[0], count_flops(pruned, (x[:1],))[0]
    assert after < 0.8 * before, (before, after)
    assert bool(plan.graph.inexact) != exact
    with torch.no_grad():
        out = pruned(x)
        if exact:
            ref = zero_channels_(copy.deepcopy(model), plan)(x)
            torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    loaded = sq.load(sq.save(pruned, tmp_path / "m.sqz"), model=_create(name, size))
    with torch.no_grad():
        assert torch.equal(loaded(x), out)


def test_timm_vit_heads_and_mlp_prune_and_reload(tmp_path: Path) -> None:
    model = _create("vit_tiny_patch16_224", 32)
    x = torch.randn(2, 3, 32, 32)
    report = sq.prune_(model, sq.pruning.HeadPruning(heads=0.3, mlp=0.5), x[:1])
    assert {(a["heads"], a["kept"]) for a in report.attention} == {(3, 2)}
    assert {(p["units"], p["kept"]) for p in report.mlps} == {(768, 384)}
    attn = model.blocks[0].attn
    assert (attn.num_heads, attn.attn_dim, attn.qkv.out_features) == (2, 128, 384)
    assert report.flops_after < 0.75 * report.flops_before
    loaded = sq.load(
        sq.save(model, tmp_path / "vit.sqz"), model=_create("vit_tiny_patch16_224", 32)
    )
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
