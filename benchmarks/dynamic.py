"""Fast convolution algorithms against PyTorch's convolution (Winograd F(2x2, 3x3), FFT),
perforated convolution (evaluated at 1/2 and 1/4 of the positions) on layers and trained nets,
and early exits on a trained ResNet-20.

    python benchmarks/dynamic.py                        # about 25 minutes on 2 cores
    python benchmarks/dynamic.py --sections fastconv --compile   # also under torch.compile
    python benchmarks/dynamic.py --sections perforation --batch-sizes 1 --min-run-time 0.2
    python benchmarks/dynamic.py --sections early-exit --head-channels 32   # conv heads
    python benchmarks/dynamic.py --sections block-drop --penalties 1,5
    python benchmarks/dynamic.py --sections moe
    python benchmarks/dynamic.py --sections stochastic-depth --sd-epochs 3   # ~35 min on 2 cores

For each layer shape, ``nn.Conv2d`` (oneDNN on this CPU) and the same weights in
``WinogradConv2d`` (3x3 only) and ``FFTConv2d`` are timed alternately in one run (medians),
at each batch size, with all threads of the machine; the speedup is the conv's time over the
candidate's. FLOPs are counted by ``torch.utils.flop_counter`` for the conv and Winograd (its
transforms count as the small matrix products they are computed with) and by the layer's own
formula for FFT (the counter has none for FFTs); the largest output difference is on the same
random input.

Perforation: each layer shape is timed as ``nn.Conv2d`` against ``PerforatedConv2d`` at rates
1 (every position: the cost of computing by gather and one matrix product instead of oneDNN's
direct convolution), 2 and 4 (grid masks). Then every convolution of a trained LeNet-5
(MNIST) and VGG-11-BN (Fashion-MNIST), from the checkpoints the other benchmarks share, is
perforated at 2x and 4x: test error without retraining (and, for LeNet-5, after one epoch of
fine-tuning at lr 0.01; for VGG-11, with its BatchNorm statistics re-estimated on training
images), FLOPs, and the whole model's measured speedup at batch 1 and 16.
Early exits: heads after ResNet-20's first two stages (Fashion-MNIST checkpoint), trained with
the backbone frozen; per confidence threshold, test error, the exits taken, expected FLOPs and
the measured time of whole passes over test batches against the model's, alternating.
BlockDrop: a per-image block-skipping policy on the same ResNet-20, per penalty: test error,
blocks run, expected FLOPs and the time of passes over the test set (``measure_data``).
Mixture of experts: an MLP with a MoE block against dense blocks of equal compute and of
equal parameters.
Stochastic depth: a zoo ResNet (ResNet-56 by default) trained alike with and without it.

Writes results/dynamic.{json,md}.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

import squeezer as sq
from harness import elapsed, provenance, read_report, time_against_first, write_report
from squeezer.analysis import count_flops, time_models
from squeezer.layers import FFTConv2d, WinogradConv2d

# (channels in, channels out, height = width, kernel)
SHAPES = [
    (16, 16, 28, 3),
    (64, 64, 14, 3),
    (64, 64, 56, 3),
    (128, 128, 28, 3),
    (32, 32, 28, 5),
    (32, 32, 28, 7),
    (16, 16, 64, 11),
]


def fastconv(args: argparse.Namespace) -> list[dict[str, Any]]:
    threads = torch.get_num_threads()
    rows = []
    for c, o, size, k in SHAPES:
        torch.manual_seed(0)
        conv = nn.Conv2d(c, o, k, padding=k // 2).eval()
        candidates: dict[str, nn.Module] = {"fft": FFTConv2d.from_conv(conv).eval()}
        if k == 3:
            candidates = {"winograd": WinogradConv2d.from_conv(conv).eval(), **candidates}
        x = torch.randn(1, c, size, size)
        with torch.no_grad():
            ref = conv(x)
            diffs = {n: float((m(x) - ref).abs().max()) for n, m in candidates.items()}
        flops = {"conv": count_flops(conv, x)[0]}
        for n, m in candidates.items():
            flops[n] = m.flops(size, size) if isinstance(m, FFTConv2d) else count_flops(m, x)[0]
        backends = ["eager", "compile"] if args.compile else ["eager"]
        for backend in backends:
            models = [conv, *candidates.values()]
            if backend == "compile":
                models = [torch.compile(m) for m in models]
            for batch in args.batch_sizes:
                times = time_models(models, (x,), batch, threads, min_run_time=args.min_run_time)
                base = times[0].median_ms
                row = {
                    "shape": f"{c}->{o}, {size}x{size}, {k}x{k}",
                    "backend": backend,
                    "batch": batch,
                    "conv_ms": base,
                    "flops_per_example": flops,
                    "max_abs_diff": diffs,
                }
                for (n, _), t in zip(candidates.items(), times[1:], strict=True):
                    row[f"{n}_ms"] = t.median_ms
                    row[f"{n}_speedup"] = base / t.median_ms
                rows.append(row)
                parts = [f"{n} {row[f'{n}_speedup']:.2f}x" for n in candidates]
                print(f"{row['shape']:24s} {backend:7s} b{batch:<3d} conv {base:8.3f} ms  "
                      + "  ".join(parts) + f"  [{elapsed():.0f} s]", flush=True)  # fmt: skip
    return rows


PERFORATION_SHAPES = [(16, 16, 28, 3), (64, 64, 28, 3), (64, 64, 56, 3), (32, 32, 28, 5)]


def perforation(args: argparse.Namespace) -> dict[str, Any]:
    from squeezer.layers import PerforatedConv2d

    threads = torch.get_num_threads()
    layers = []
    for c, o, size, k in PERFORATION_SHAPES:
        torch.manual_seed(0)
        conv = nn.Conv2d(c, o, k, padding=k // 2).eval()
        rates = (1.0, 2.0, 4.0)
        grid = [PerforatedConv2d.from_conv(conv, r, "grid").eval() for r in rates]
        strided = [PerforatedConv2d.from_conv(conv, r, "strided").eval() for r in rates[1:]]
        models = [conv, *grid, *strided]
        x = torch.randn(1, c, size, size)
        flops = [count_flops(m, x)[0] for m in models]
        for batch in args.batch_sizes:
            times = time_models(models, (x,), batch, threads, min_run_time=args.min_run_time)
            row = {"shape": f"{c}->{o}, {size}x{size}, {k}x{k}", "batch": batch,
                   "conv_ms": times[0].median_ms, "conv_flops": flops[0]}  # fmt: skip
            names = [f"rate{r:g}" for r in rates] + [f"strided{r:g}" for r in rates[1:]]
            for name, t, f in zip(names, times[1:], flops[1:], strict=True):
                row[f"{name}_ms"] = t.median_ms
                row[f"{name}_speedup"] = times[0].median_ms / t.median_ms
                row[f"{name}_flops"] = f
            layers.append(row)
            print(f"perforated {row['shape']:22s} b{batch:<3d} conv {row['conv_ms']:.3f} ms  "
                  + "  ".join(f"{n} {row[f'{n}_speedup']:.2f}x" for n in names)
                  + f"  [{elapsed():.0f} s]", flush=True)  # fmt: skip
    return {"layers": layers, "models": perforated_models(args)}


def perforated_models(args: argparse.Namespace) -> list[dict[str, Any]]:
    import copy

    from harness import trained

    threads = torch.get_num_threads()
    rows = []
    for name, dataset in (("lenet5", "mnist"), ("vgg11_bn", "fashion-mnist")):
        train, test = sq.data.load(dataset)
        base = trained(name, dataset, train, epochs=10).eval()
        x = torch.zeros(1, *test.input_shape)
        base_err = 1.0 - sq.evaluate(base, test)["top1"]
        base_flops = count_flops(base, x)[0]
        for rate, mask in ((2.0, "grid"), (4.0, "grid"), (2.0, "strided"), (4.0, "strided")):
            model = copy.deepcopy(base)
            sq.prune_(model, sq.pruning.Perforation(rate=rate, mask=mask), x)
            row = {
                "model": name,
                "dataset": dataset,
                "rate": rate,
                "mask": mask,
                "error_before": base_err,
                "error": 1.0 - sq.evaluate(model, test)["top1"],
                "flops_before": base_flops,
                "flops": count_flops(model, x)[0],
            }
            if any(isinstance(m, nn.BatchNorm2d) for m in model.modules()):
                sq.train.recalibrate_bn_(model, train)  # perforation shifts the BN inputs
                row["error_bn_recalibrated"] = 1.0 - sq.evaluate(model, test)["top1"]
            for batch in args.batch_sizes:
                t = time_models([base, model], (x,), batch, threads, min_run_time=args.min_run_time)
                row[f"speedup_b{batch}"] = t[0].median_ms / t[1].median_ms
            if name == "lenet5":
                tuned = copy.deepcopy(model)
                sq.fit(tuned, train, epochs=1, lr=0.01, verbose=False)
                row["error_finetuned_1_epoch"] = 1.0 - sq.evaluate(tuned, test)["top1"]
            rows.append(row)
            print(f"{name} perforated x{rate:g} {mask}: error {base_err:.2%} -> {row['error']:.2%}"
                  + (f" ({row['error_finetuned_1_epoch']:.2%} after 1 epoch)"
                     if "error_finetuned_1_epoch" in row else "")
                  + (f" ({row['error_bn_recalibrated']:.2%} with BN re-estimated)"
                     if "error_bn_recalibrated" in row else "")
                  + f", FLOPs {base_flops / row['flops']:.2f}x fewer, "
                  + ", ".join(f"b{b} {row[f'speedup_b{b}']:.2f}x" for b in args.batch_sizes)
                  + f"  [{elapsed():.0f} s]", flush=True)  # fmt: skip
    return rows


def early_exit(args: argparse.Namespace) -> dict[str, Any]:
    """Exits after ResNet-20's first and second stages (heads trained, backbone frozen), then
    accuracy, exits taken, expected FLOPs and measured time over test images per threshold."""
    import time

    from harness import trained

    train, test = sq.data.load("fashion-mnist")
    model = trained("resnet20", "fashion-mnist", train, epochs=10).eval()
    x = torch.zeros(1, *test.input_shape)
    net = sq.dynamic.early_exits(model, ["layers.0", "layers.1"], x,
                                 head_channels=args.head_channels)  # fmt: skip
    net.freeze_backbone_()
    torch.manual_seed(0)
    sq.fit(net, train, epochs=args.exit_epochs, lr=0.05, callbacks=[sq.dynamic.ExitLoss(net)],
           verbose=True)  # fmt: skip
    net.eval()
    costs = sq.dynamic.exit_costs(net, x)
    loader = list(sq.data.loader(test, 100, shuffle=False))
    timed = loader[: args.timed_batches]
    base_err = 1.0 - sq.evaluate(model, test)["top1"]
    rows = []
    for threshold in args.thresholds:
        net.threshold = threshold
        wrong, exits = 0, []
        with torch.no_grad():
            for xb, yb in loader:
                wrong += int((net(xb).argmax(1) != yb).sum())
                exits.append(net.last_exits)
        taken = torch.cat(exits)
        times: dict[str, list[float]] = {"model": [], "exits": []}
        with torch.no_grad():
            for _ in range(args.rounds):  # alternating whole passes over the timed batches
                for name, m in (("model", model), ("exits", net)):
                    t0 = time.perf_counter()
                    for xb, _ in timed:
                        m(xb)
                    times[name].append(time.perf_counter() - t0)
        med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
        row = {
            "threshold": threshold,
            "error": wrong / len(taken),
            "exit_fractions": [float((taken == i).float().mean()) for i in range(len(costs))],
            "expected_flops": sq.dynamic.expected_flops(costs, taken),
            "model_seconds": med["model"],
            "exits_seconds": med["exits"],
        }
        rows.append(row)
        print(f"early exit t={threshold:g}: error {row['error']:.2%} (model {base_err:.2%}), "
              f"exits {' / '.join(f'{f:.0%}' for f in row['exit_fractions'])}, FLOPs "
              f"{costs[-1] / row['expected_flops']:.2f}x fewer, time "
              f"{med['model'] / med['exits']:.2f}x  [{elapsed():.0f} s]", flush=True)  # fmt: skip
    return {"model": "resnet20 (fashion-mnist)", "error_before": base_err, "costs": costs,
            "model_flops": count_flops(model, x)[0],
            "head_channels": args.head_channels,
            "exit_epochs": args.exit_epochs, "timed_images": 100 * len(timed),
            "rounds": args.rounds, "rows": rows}  # fmt: skip


def block_drop(args: argparse.Namespace) -> dict[str, Any]:
    """A BlockDrop policy on ResNet-20's seven shape-keeping blocks (Fashion-MNIST checkpoint),
    trained by REINFORCE with the backbone frozen, per penalty; then test error, blocks used,
    expected FLOPs and time over the whole test set against the model (``measure_data``)."""
    import copy

    from harness import trained

    train, test = sq.data.load("fashion-mnist")
    base = trained("resnet20", "fashion-mnist", train, epochs=10).eval()
    x = torch.zeros(1, *test.input_shape)
    base_err = 1.0 - sq.evaluate(base, test)["top1"]
    rows = []
    for penalty in args.penalties:
        torch.manual_seed(0)
        net = sq.dynamic.block_drop(copy.deepcopy(base), example_inputs=x)
        history = sq.dynamic.train_policy(net, train, epochs=args.policy_epochs, lr=1e-3,
                                          penalty=penalty, verbose=True)  # fmt: skip
        m = sq.analysis.measure_data(net, test, baseline=base, rounds=args.rounds)
        with torch.no_grad():
            used = torch.cat([net.decide(xb) for xb, _ in sq.data.loader(test, 500)])
        row = {
            "penalty": penalty,
            "history": history,
            "error": 1.0 - (m.model.top1 or 0.0),
            "blocks_used": float(used.float().sum(1).mean()),
            "block_use": used.float().mean(0).tolist(),
            **{k: v for k, v in m.to_dict().items() if k in ("flops_reduction", "speedup")},
            "measurement": m.to_dict(),
        }
        rows.append(row)
        print(f"BlockDrop penalty {penalty:g}: error {row['error']:.2%} (model {base_err:.2%}), "
              f"{row['blocks_used']:.2f} of {len(net.names)} blocks, FLOPs "
              f"{m.flops_reduction:.2f}x fewer, measured {m.speedup:.2f}x  "
              f"[{elapsed():.0f} s]", flush=True)  # fmt: skip
    return {"model": "resnet20 (fashion-mnist)", "error_before": base_err,
            "blocks": len(net.names), "policy_epochs": args.policy_epochs,
            "rounds": args.rounds, "rows": rows}  # fmt: skip


def block_drop_markdown(report: dict[str, Any]) -> list[str]:
    b = report["block-drop"]
    lines = [
        "",
        "## BlockDrop on a trained ResNet-20, Fashion-MNIST",
        "",
        f"`{report['block-drop_command']}` (torch {report['torch']}, {report['threads']} "
        "threads, eager)",
        "",
        f"A policy CNN (two stride-2 convs, 16 and 32 channels, then one Linear) chooses per "
        f"image which of the {b['blocks']} shape-keeping residual blocks run (the two that "
        f"downsample always run); trained {b['policy_epochs']} epoch(s) by REINFORCE "
        "(self-critical baseline, reward 1 - (used/K)^2 when right, -penalty when wrong; Adam "
        f"1e-3), the backbone frozen ({b['error_before']:.2%} test error). Inference: a block "
        "runs where its probability is above 1/2, on the rows of the batch that keep it. "
        "Expected FLOPs: the mean over the 10,000 test images of each one's cost (policy "
        "included); time: whole passes over the test set in batches of 100, the model and "
        f"the BlockDrop network alternately, {b['rounds']} rounds, medians.",
        "",
        "| penalty | test error | blocks run (mean) | per-block use | expected FLOPs reduction "
        "| measured speedup |",
        "|---|---|---|---|---|---|",
    ]
    for r in b["rows"]:
        use = " ".join(f"{u:.0%}" for u in r["block_use"])
        lines.append(f"| {r['penalty']:g} | {r['error']:.2%} | {r['blocks_used']:.2f} | {use} "
                     f"| {r['flops_reduction']:.2f}x | {r['speedup']:.2f}x |")  # fmt: skip
    return lines


def _mlp(block: nn.Module) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), block, nn.ReLU(),
                         nn.Linear(128, 10))  # fmt: skip


def _expert_mlp(hidden: int) -> nn.Module:
    return nn.Sequential(nn.Linear(128, hidden), nn.ReLU(), nn.Linear(hidden, 128))


def moe(args: argparse.Namespace) -> dict[str, Any]:
    """A sparsely-gated mixture-of-experts layer against dense layers in an MLP on
    Fashion-MNIST: the dense block as large as one expert (equal compute at k = 1), the MoE
    at k = 1 and 2, and a dense block as wide as all experts together (equal parameters)."""
    train, test = sq.data.load("fashion-mnist")
    x = torch.zeros(1, *test.input_shape)
    e, h = args.experts, args.expert_hidden
    builds = {
        f"dense (hidden {h}, one expert's compute)": lambda: _mlp(_expert_mlp(h)),
        f"MoE {e} experts, k=1": lambda: _mlp(sq.layers.MixtureOfExperts(128, 128, e, 1, h)),
        f"MoE {e} experts, k=2": lambda: _mlp(sq.layers.MixtureOfExperts(128, 128, e, 2, h)),
        f"dense (hidden {h * e}, all experts' parameters)": lambda: _mlp(_expert_mlp(h * e)),
    }
    rows, models = [], []
    for name, build in builds.items():
        torch.manual_seed(0)
        model = build()
        t0 = elapsed()
        sq.fit(model, train, epochs=args.moe_epochs, lr=0.05, verbose=False)
        model.eval()
        row = {
            "model": name,
            "params": sum(p.numel() for p in model.parameters()),
            "flops": count_flops(model, x)[0],
            "error": 1.0 - sq.evaluate(model, test)["top1"],
            "train_seconds": elapsed() - t0,
        }
        moe_layer = next((m for m in model.modules()
                          if isinstance(m, sq.layers.MixtureOfExperts)), None)  # fmt: skip
        if moe_layer is not None:
            with torch.no_grad():
                load = torch.zeros(e)
                for xb, _ in sq.data.loader(test, 1000):
                    model(xb)
                    load += moe_layer.last_load.float()
            row["expert_load"] = (load / load.sum()).tolist()
        rows.append(row)
        models.append(model)
        print(f"{name}: {row['params']:,} params, {row['flops']:,} FLOPs, error "
              f"{row['error']:.2%}  [{elapsed():.0f} s]", flush=True)  # fmt: skip
    time_against_first(rows, models, x, args.batch_sizes, args.min_run_time, "dense")
    return {"dataset": "fashion-mnist", "epochs": args.moe_epochs, "rows": rows}


def moe_markdown(report: dict[str, Any]) -> list[str]:
    m = report["moe"]
    sizes = sorted({int(k[1:].split("_")[0]) for r in m["rows"] for k in r if k.endswith("_ms")})
    lines = [
        "",
        "## Sparsely-gated mixture of experts against dense layers, Fashion-MNIST MLP",
        "",
        f"`{report['moe_command']}` (torch {report['torch']}, {report['threads']} threads, eager)",
        "",
        "784 -> 128 -> [block] -> 10 with ReLUs; the block is a two-layer MLP 128 -> hidden -> "
        "128 (dense) or a mixture of such experts with noisy top-k gating and the "
        f"load-balancing terms (Shazeer 2017). {m['epochs']} epochs of SGD (lr 0.05, cosine), "
        "seed 0. FLOPs of one example (the MoE counts the experts it runs); latency timed "
        "alternately with the first row.",
        "",
        "| model | params | FLOPs | test error | expert load | "
        + " | ".join(f"b{b} ms (vs first)" for b in sizes)
        + " |",
        "| --- " * (5 + len(sizes)) + "|",
    ]
    for r in m["rows"]:
        load = " ".join(f"{v:.0%}" for v in r["expert_load"]) if "expert_load" in r else ""
        t = [f"{r[f'b{b}_ms']:.3f} ({r[f'b{b}_vs_dense']:.2f}x)" for b in sizes]
        lines.append(f"| {r['model']} | {r['params']:,} | {r['flops']:,} | {r['error']:.2%} | "
                     f"{load} | " + " | ".join(t) + " |")  # fmt: skip
    return lines


def stochastic_depth(args: argparse.Namespace) -> dict[str, Any]:
    """A ResNet trained from scratch with and without stochastic depth (linear decay to
    ``--sd-survival``), the same epochs and schedule: test error after each epoch, seconds
    per training epoch, and inference FLOPs and latency (identical work: the branches are
    only scaled)."""
    train, test = sq.data.load("fashion-mnist")
    x = torch.zeros(1, *test.input_shape)
    shape = train.input_shape
    rows, models = [], []
    for survival in (None, args.sd_survival):
        torch.manual_seed(0)
        model = sq.models.create(args.sd_model, num_classes=train.num_classes,
                                 in_channels=shape[0], input_size=shape[1])  # fmt: skip
        name = args.sd_model
        if survival is not None:
            sq.convert_(model, sq.dynamic.StochasticDepth(final_survival=survival), x)
            name = f"{args.sd_model}, stochastic depth (p_L = {survival:g})"
        result = sq.fit(model, train, epochs=args.sd_epochs, lr=0.05, val=test, verbose=True,
                        device=args.device)  # fmt: skip
        model.cpu().eval()
        history = [{"epoch": i + 1, "test_error": 1.0 - h["val_top1"], "seconds": h["seconds"]}
                   for i, h in enumerate(result.history)]  # fmt: skip
        params = sum(p.numel() for p in model.parameters())
        row = {"model": name, "final_survival": survival, "params": params,
               "flops": count_flops(model, x)[0], "error": history[-1]["test_error"],
               "best_error": min(h["test_error"] for h in history),
               "seconds_per_epoch": sum(h["seconds"] for h in history) / len(history),
               "history": history}  # fmt: skip
        rows.append(row)
        models.append(model)
        print(
            f"{name}: error {row['error']:.2%} (best {row['best_error']:.2%}), "
            f"{row['seconds_per_epoch']:.0f} s/epoch  [{elapsed():.0f} s]",
            flush=True,
        )
    time_against_first(rows, models, x, args.batch_sizes, args.min_run_time, "plain")
    return {"dataset": "fashion-mnist", "epochs": args.sd_epochs, "device": args.device,
            "rows": rows}  # fmt: skip


def stochastic_depth_markdown(report: dict[str, Any]) -> list[str]:
    s = report["stochastic-depth"]
    sizes = sorted({int(k[1:].split("_")[0]) for r in s["rows"] for k in r if k.endswith("_ms")})
    lines = [
        "",
        "## Stochastic depth (Huang 2016) against the plain ResNet, Fashion-MNIST",
        "",
        f"`{report['stochastic-depth_command']}` (torch {report['torch']}, "
        f"{report['threads']} threads, trained on {s['device'] or 'cpu'}, timed eager on the "
        "CPU)",
        "",
        f"Both trained from scratch alike: {s['epochs']} epochs of SGD (lr 0.05, momentum 0.9, "
        "cosine, batch 128), seed 0. Stochastic depth wraps each residual branch's last "
        "BatchNorm: survival decays linearly to p_L over the blocks, one draw per mini-batch; "
        "a dropped branch adds zeros, so its backward pass is skipped but its first "
        "convolutions still run forward. At inference every branch runs, scaled by its "
        "survival: the same FLOPs as the plain network.",
        "",
        "| model | params | FLOPs | test error (last / best epoch) | s per training epoch | "
        + " | ".join(f"b{b} ms (vs plain)" for b in sizes)
        + " |",
        "| --- " * (5 + len(sizes)) + "|",
    ]
    for r in s["rows"]:
        t = [f"{r[f'b{b}_ms']:.2f} ({r[f'b{b}_vs_plain']:.2f}x)" for b in sizes]
        lines.append(f"| {r['model']} | {r['params']:,} | {r['flops']:,} | {r['error']:.2%} / "
                     f"{r['best_error']:.2%} | {r['seconds_per_epoch']:.0f} | "
                     + " | ".join(t) + " |")  # fmt: skip
    lines += ["", "Test error after each epoch:", ""]
    for r in s["rows"]:
        errs = ", ".join(f"{h['test_error']:.2%}" for h in r["history"])
        lines.append(f"- {r['model']}: {errs}")
    return lines


SECTIONS = ("fastconv", "perforation", "early-exit", "block-drop", "moe", "stochastic-depth")


def run(args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {**provenance("dynamic.py")}
    earlier = read_report("dynamic") or {}
    makers = {"fastconv": fastconv, "perforation": perforation, "early-exit": early_exit,
              "block-drop": block_drop, "moe": moe,
              "stochastic-depth": stochastic_depth}  # fmt: skip
    for section in SECTIONS:
        if section in args.sections:
            report[section] = makers[section](args)
        elif section in earlier:
            report[section] = earlier[section]  # a run of one section keeps the other's
            report[f"{section}_command"] = earlier.get(f"{section}_command", earlier["command"])
        if section in args.sections:
            report[f"{section}_command"] = report["command"]
    for key in ("early-exit-linear", "early-exit-linear_command"):  # an earlier variant's rows
        if key in earlier:
            report[key] = earlier[key]
    return report


def to_markdown(report: dict[str, Any]) -> str:
    lines = ["# Fast and perforated convolution against PyTorch's convolution", ""]
    if "fastconv" in report:
        lines += fastconv_markdown(report)
    if "perforation" in report:
        lines += perforation_markdown(report)
    for key in ("early-exit-linear", "early-exit"):  # the linear-head run kept beside
        if key in report:
            lines += early_exit_markdown(report, key)
    if "block-drop" in report:
        lines += block_drop_markdown(report)
    if "moe" in report:
        lines += moe_markdown(report)
    if "stochastic-depth" in report:
        lines += stochastic_depth_markdown(report)
    return "\n".join(lines) + "\n"


def perforation_markdown(report: dict[str, Any]) -> list[str]:
    p = report["perforation"]
    lines = [
        "## Perforated convolution (Figurnov et al. 2016), grid masks",
        "",
        f"`{report['perforation_command']}` (torch {report['torch']}, {report['threads']} "
        "threads, eager)",
        "",
        "One layer, `nn.Conv2d` against `PerforatedConv2d` with the same weights, timed "
        "alternately in one run (medians); speedup = conv time / perforated time. Grid masks "
        "(Figurnov's, uneven spacing) gather the kept positions' patches and multiply once; "
        "rate 1 evaluates every position that way: the price of gather-and-matmul against "
        "oneDNN's direct convolution. Strided masks (even spacing) run as one strided oneDNN "
        "convolution plus the nearest-neighbour fill.",
        "",
        "| layer | batch | conv ms | grid, rate 1 | grid, rate 2 | grid, rate 4 | strided, "
        "rate 2 | strided, rate 4 | FLOPs at rate 2 / 4 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in p["layers"]:
        lines.append(
            f"| {r['shape']} | {r['batch']} | {r['conv_ms']:.3f} | {r['rate1_speedup']:.2f}x | "
            f"{r['rate2_speedup']:.2f}x | {r['rate4_speedup']:.2f}x | "
            f"{r['strided2_speedup']:.2f}x | {r['strided4_speedup']:.2f}x | "
            f"{r['conv_flops'] / r['rate2_flops']:.2f}x / {r['conv_flops'] / r['rate4_flops']:.2f}x"
            " fewer |"
        )
    batches = sorted({int(k[9:]) for r in p["models"] for k in r if k.startswith("speedup_b")})
    lines += [
        "",
        "Trained networks, every convolution perforated (no retraining unless stated); test "
        "error on the full test set, FLOPs of one example, measured speedup of the whole model:",
        "",
        "| model | rate | error before | error after | after 1 epoch | FLOPs | "
        + " | ".join(f"speedup b{b}" for b in batches)
        + " |",
        "|---|---|---|---|---|---|" + "---|" * len(batches),
    ]
    for r in p["models"]:
        tuned = r.get("error_finetuned_1_epoch")
        bn = r.get("error_bn_recalibrated")
        lines.append(
            f"| {r['model']} ({r['dataset']}) | {r['mask']} | {r['rate']:g} | "
            f"{r['error_before']:.2%} | "
            f"{r['error']:.2%} | {'' if bn is None else f'{bn:.2%}'} | "
            f"{'' if tuned is None else f'{tuned:.2%}'} | "
            f"{r['flops_before'] / r['flops']:.2f}x fewer | "
            + " | ".join(f"{r[f'speedup_b{b}']:.2f}x" for b in batches)
            + " |"
        )
    return lines


def early_exit_markdown(report: dict[str, Any], key: str = "early-exit") -> list[str]:
    e = report[key]
    costs = e["costs"]
    lines = [
        "",
        "## Early exits (BranchyNet-style) on a trained ResNet-20, Fashion-MNIST: "
        + (
            f"conv heads ({e['head_channels']} channels)"
            if e.get("head_channels")
            else "linear heads"
        ),
        "",
        f"`{report[key + '_command']}` (torch {report['torch']}, {report['threads']} threads,"
        " eager)",
        "",
        "Exit heads ("
        + (
            f"a 3x3 stride-2 conv to {e['head_channels']} channels, BatchNorm, ReLU, then "
            if e.get("head_channels")
            else ""
        )
        + "global pooling + one Linear) after stage 1 and stage 2, trained "
        f"{e['exit_epochs']} epoch(s) with the backbone frozen (the model itself is unchanged: "
        f"{e['error_before']:.2%} test error). An example stops at the first exit whose top "
        "softmax probability reaches the threshold; the others go on with only their rows. "
        f"FLOPs of one example per exit: {' / '.join(f'{c / 1e6:.2f}M' for c in costs)} "
        f"(the last is the whole model plus both heads). Time: the model and the early-exit "
        f"network alternately over the first {e['timed_images']:,} test images in batches of "
        f"100, {e['rounds']} rounds, medians.",
        "",
        "| threshold | test error | exits (stage 1 / stage 2 / end) | expected FLOPs | "
        "FLOPs reduction (against the model alone) | measured speedup |",
        "|---|---|---|---|---|---|",
    ]
    full = e.get("model_flops", costs[-1])  # the model alone, without any head
    for r in e["rows"]:
        lines.append(
            f"| {r['threshold']:g} | {r['error']:.2%} | "
            + " / ".join(f"{f:.1%}" for f in r["exit_fractions"])
            + f" | {r['expected_flops'] / 1e6:.2f}M | {full / r['expected_flops']:.2f}x | "
            f"{r['model_seconds'] / r['exits_seconds']:.2f}x |"
        )
    return lines


def fastconv_markdown(report: dict[str, Any]) -> list[str]:
    lines = [
        "## Fast convolution: Winograd F(2x2, 3x3) and FFT",
        "",
        f"`{report['fastconv_command']}` (torch {report['torch']}, "
        f"{report['threads']} threads, {report['backend']})",
        "",
        "Speedup = `nn.Conv2d`'s median time over the layer's, timed alternately in one run on "
        "the same input; same weights; padding k//2, stride 1. FLOPs per example: counted "
        "(conv, Winograd: its transforms count as the 4x4 matrix products that compute them) "
        "or the FFT layer's formula. Max diff: largest output difference from the conv.",
        "",
        "| layer | backend | batch | conv ms | Winograd ms | Winograd speedup | FFT ms | "
        "FFT speedup |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report["fastconv"]:
        w = (f"{r['winograd_ms']:.3f} | {r['winograd_speedup']:.2f}x" if "winograd_ms" in r
             else "- | -")  # fmt: skip
        lines.append(
            f"| {r['shape']} | {r['backend']} | {r['batch']} | {r['conv_ms']:.3f} | {w} | "
            f"{r['fft_ms']:.3f} | {r['fft_speedup']:.2f}x |"
        )
    lines += ["", "| layer | conv MFLOPs | Winograd MFLOPs | FFT MFLOPs | max diff Winograd | "
              "max diff FFT |", "|---|---|---|---|---|---|"]  # fmt: skip
    seen = set()
    for r in report["fastconv"]:
        if r["shape"] in seen:
            continue
        seen.add(r["shape"])
        f, d = r["flops_per_example"], r["max_abs_diff"]
        wf = f"{f['winograd'] / 1e6:.2f}" if "winograd" in f else "-"
        wd = f"{d['winograd']:.1e}" if "winograd" in d else "-"
        lines.append(f"| {r['shape']} | {f['conv'] / 1e6:.2f} | {wf} | {f['fft'] / 1e6:.2f} | "
                     f"{wd} | {d['fft']:.1e} |")  # fmt: skip
    return [*lines, ""]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch-sizes", default="1,16",
                   type=lambda s: [int(v) for v in s.split(",")])  # fmt: skip
    p.add_argument("--min-run-time", type=float, default=0.5)
    p.add_argument("--compile", action="store_true", help="also time under torch.compile")
    p.add_argument("--sections", default=",".join(SECTIONS), type=lambda s: s.split(","),
                   help=", ".join(SECTIONS) + " (all)")  # fmt: skip
    p.add_argument("--exit-epochs", type=int, default=2, help="epochs training the exit heads")
    p.add_argument("--thresholds", default="0.5,0.8,0.9,0.95,0.99,0.999,1.0",
                   type=lambda s: [float(v) for v in s.split(",")])  # fmt: skip
    p.add_argument("--timed-batches", type=int, default=20, help="test batches of 100 timed")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument(
        "--penalties",
        default="1,5",
        type=lambda s: [float(v) for v in s.split(",")],
        help="BlockDrop: rewards of a wrong prediction (negated), one policy each",
    )
    p.add_argument("--policy-epochs", type=int, default=2, help="BlockDrop policy epochs")
    p.add_argument("--experts", type=int, default=8, help="MoE: experts")
    p.add_argument("--expert-hidden", type=int, default=256, help="MoE: an expert's hidden width")
    p.add_argument("--moe-epochs", type=int, default=10)
    p.add_argument("--head-channels", type=int, default=None,
                   help="exit heads with a 3x3 conv to N channels (default: linear)")  # fmt: skip
    p.add_argument("--sd-model", default="resnet56", help="stochastic depth: the zoo ResNet")
    p.add_argument("--sd-epochs", type=int, default=3)
    p.add_argument("--sd-survival", type=float, default=0.5, help="stochastic depth: p_L")
    p.add_argument("--device", default=None, help="where stochastic depth trains (cuda)")
    args = p.parse_args()
    print(write_report("dynamic", run(args), to_markdown))


if __name__ == "__main__":
    main()
