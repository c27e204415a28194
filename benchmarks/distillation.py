"""Knowledge distillation (issue 14): Hinton's MNIST experiment at this machine's scale.

    python benchmarks/distillation.py --parts hinton          # teacher, student, distilled
    python benchmarks/distillation.py --parts net2net --update  # grown vs from scratch

- ``hinton``: a 784-1200-1200-10 teacher trained with dropout and jittered inputs (random
  crops), a 784-800-800-10 student trained on the labels alone with no regularization, and
  the same student (same initial weights, same epochs, same images, no jitter) distilled from
  the teacher at temperature ``--temperature``. Published (Hinton, Vinyals & Dean 2015,
  full-length training): 67 test errors for the teacher, 146 for the student, 74 distilled.
  Issue 14's target: distillation closes >= 60% of the teacher-student gap.

- ``net2net``: a 784-64-64-10 MLP trained a few epochs is widened to 256 units a layer
  (Net2WiderNet, small noise) and deepened by one identity layer (Net2DeeperNet); the grown
  net's outputs are compared with the small one's, then it trains on beside the same grown
  architecture from a random start, with the same schedule: validation error per epoch and
  the epochs each needs to reach the small net's error.

The validation split (5,000 training images) picks nothing here: every setting is fixed
before the run; the test set is read once per model at the end. Writes
benchmarks/results/distillation.{json,md}.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

import squeezer as sq
from harness import elapsed, provenance, read_report, write_report
from squeezer.distillation import KD, deepen_, widen_


def log(msg: str) -> None:
    print(f"[{elapsed():6.0f}s] {msg}", file=sys.stderr, flush=True)


def mlp(hidden: int, dropout: bool) -> nn.Module:
    """Hinton's MNIST nets: two hidden ReLU layers; the teacher with dropout (0.2 on the
    input, 0.5 on the hidden units)."""
    layers: list[nn.Module] = [nn.Flatten()]
    if dropout:
        layers.append(nn.Dropout(0.2))
    width = 28 * 28
    for _ in range(2):
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(0.5))
        width = hidden
    layers.append(nn.Linear(width, 10))
    return nn.Sequential(*layers)


def errors(model: nn.Module, test: Any) -> int:
    return round((1 - sq.evaluate(model, test)["top1"]) * len(test))


def run_hinton(args: argparse.Namespace) -> dict[str, Any]:
    train, test = sq.data.load("mnist")  # augment on: random crops, Hinton's jitter
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
    fit_jitter, val = train.subset(order[5000:]), train.subset(order[:5000]).without_augment()
    fit_plain = fit_jitter.without_augment()
    common = {"lr": args.lr, "batch_size": 128, "schedule": "cosine", "weight_decay": 0.0}
    torch.manual_seed(0)
    teacher = mlp(args.teacher_hidden, dropout=True)
    log(f"teacher 2 x {args.teacher_hidden}, dropout, jitter, {args.teacher_epochs} epochs")
    t_hist = sq.fit(teacher, fit_jitter, epochs=args.teacher_epochs, val=val, verbose=True,
                    **common)  # fmt: skip
    torch.manual_seed(1)
    student0 = mlp(args.student_hidden, dropout=False)
    alone, distilled = copy.deepcopy(student0), copy.deepcopy(student0)
    log(f"student 2 x {args.student_hidden} on the labels, {args.student_epochs} epochs")
    a_hist = sq.fit(alone, fit_plain, epochs=args.student_epochs, val=val, verbose=True,
                    **common)  # fmt: skip
    method = KD(temperature=args.temperature, alpha=args.alpha)
    log(f"the same student distilled ({method})")
    d_hist = sq.distill(distilled, teacher, fit_plain, method, epochs=args.student_epochs,
                        val=val, verbose=True, **common)  # fmt: skip
    t_err, a_err, d_err = errors(teacher, test), errors(alone, test), errors(distilled, test)
    gap = a_err - t_err
    closed = (a_err - d_err) / gap if gap > 0 else None
    log(f"test errors: teacher {t_err}, student {a_err}, distilled {d_err}; closed {closed}")
    return {
        "teacher": {"hidden": args.teacher_hidden, "epochs": args.teacher_epochs,
                    "test_errors": t_err, "val_error": 1 - t_hist.history[-1]["val_top1"]},
        "student_alone": {"hidden": args.student_hidden, "epochs": args.student_epochs,
                          "test_errors": a_err, "val_error": 1 - a_hist.history[-1]["val_top1"]},
        "distilled": {"hidden": args.student_hidden, "epochs": args.student_epochs,
                      "method": method.to_dict(), "test_errors": d_err,
                      "val_error": 1 - d_hist.history[-1]["val_top1"]},
        "test_images": len(test), "train_images": len(fit_plain), "gap_closed": closed,
        "target": {"gap_closed": 0.6, "met": closed is not None and closed >= 0.6},
        "published": {"teacher": 67, "student_alone": 146, "distilled": 74},
        "training": common,
    }  # fmt: skip


def run_net2net(args: argparse.Namespace) -> dict[str, Any]:
    train, test = sq.data.load("mnist")
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
    fit_part = train.subset(order[5000:]).without_augment()
    val = train.subset(order[:5000]).without_augment()
    common = {"lr": args.lr, "batch_size": 128, "weight_decay": 0.0, "schedule": "constant"}
    torch.manual_seed(0)
    small = mlp(64, dropout=False)
    log(f"small 2 x 64, {args.net2net_small_epochs} epochs")
    sq.fit(small, fit_part, epochs=args.net2net_small_epochs, verbose=True, **common)
    small_err = 1 - sq.evaluate(small, val)["top1"]
    grown = copy.deepcopy(small)
    widen_(grown, "1", "3", args.net2net_width, noise=0.01, seed=0)
    widen_(grown, "3", "5", args.net2net_width, noise=0.01, seed=1)
    deepen_(grown, "4")  # an identity layer after the second ReLU
    x = torch.cat([b[0] for _, b in zip(range(4), sq.data.loader(val, 256, shuffle=False),
                                        strict=False)])  # fmt: skip
    with torch.no_grad():
        small.eval(), grown.eval()
        diff = float((small(x) - grown(x)).abs().max())
        exact = copy.deepcopy(small)
        widen_(exact, "1", "3", args.net2net_width, seed=0)
        widen_(exact, "3", "5", args.net2net_width, seed=1)
        deepen_(exact, "4")
        exact.eval()
        exact_diff = float((small(x) - exact(x)).abs().max())
    grown_err0 = 1 - sq.evaluate(grown, val)["top1"]
    torch.manual_seed(2)
    scratch = copy.deepcopy(grown)
    for m in scratch.modules():
        if isinstance(m, nn.Linear):
            m.reset_parameters()
    curves = {}
    for name, model in (("grown", grown), ("scratch", scratch)):
        log(f"{name}: {args.net2net_epochs} epochs")
        hist = sq.fit(model, fit_part, epochs=args.net2net_epochs, val=val, verbose=True,
                      **common)  # fmt: skip
        curves[name] = [1 - h["val_top1"] for h in hist.history]

    def first_at(curve: list[float]) -> int | None:
        return next((i + 1 for i, e in enumerate(curve) if e <= small_err), None)

    return {
        "small": {"hidden": 64, "epochs": args.net2net_small_epochs, "val_error": small_err,
                  "test_error": 1 - sq.evaluate(small, test)["top1"]},
        "grown": {"hidden": args.net2net_width, "extra_layer": True,
                  "max_abs_output_diff_no_noise": exact_diff,
                  "max_abs_output_diff_with_noise": diff, "val_error_at_start": grown_err0,
                  "val_error_per_epoch": curves["grown"],
                  "epochs_to_small_error": first_at(curves["grown"]),
                  "test_error": 1 - sq.evaluate(grown, test)["top1"]},
        "scratch": {"val_error_per_epoch": curves["scratch"],
                    "epochs_to_small_error": first_at(curves["scratch"]),
                    "test_error": 1 - sq.evaluate(scratch, test)["top1"]},
        "training": common,
    }  # fmt: skip


def to_markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Knowledge distillation",
        "",
        f"Command: `{report['command']}`  ",
        f"Date: {report['date']}; torch {report['torch']}; {report['threads']} threads; "
        f"total {report['seconds'] / 60:.1f} min.",
        "",
    ]
    h = report.get("hinton")
    if h:
        t, a, d = h["teacher"], h["student_alone"], h["distilled"]
        tr = h["training"]
        closed = "n/a" if h["gap_closed"] is None else f"{100 * h['gap_closed']:.0f}%"
        lines += [
            "## Hinton's MNIST experiment",
            "",
            f"SGD (momentum 0.9) at lr {tr['lr']}, cosine, batch {tr['batch_size']}, no weight "
            f"decay; {h['train_images']:,} training images (5,000 held out for validation, "
            "which chose nothing); the teacher with dropout and random-crop jitter, both "
            "students without either, from the same initial weights, on the same images "
            f"for the same epochs. Errors are out of {h['test_images']:,} test images.",
            "",
            "| network | hidden units | epochs | test errors | published (full training) |",
            "| --- | --- | --- | --- | --- |",
            f"| teacher (dropout, jitter) | 2 x {t['hidden']} | {t['epochs']} | "
            f"{t['test_errors']} | 67 |",
            f"| student, labels alone | 2 x {a['hidden']} | {a['epochs']} | {a['test_errors']} "
            "| 146 |",
            f"| student, distilled (T = {d['method']['temperature']:g}, alpha = "
            f"{d['method']['alpha']:g}) | 2 x {d['hidden']} | {d['epochs']} | "
            f"{d['test_errors']} | 74 |",
            "",
            f"Distillation closed {closed} of the teacher-student gap (issue 14's target: >= "
            f"60%: {'met' if h['target']['met'] else 'missed'}; published: 90%).",
            "",
        ]
    n = report.get("net2net")
    if n:
        sm, gr, sc = n["small"], n["grown"], n["scratch"]

        def curve(c: list[float]) -> str:
            return ", ".join(f"{100 * e:.2f}" for e in c)

        lines += [
            "## Net2Net: growing a trained network against training the big one from scratch",
            "",
            f"A 784-64-64-10 MLP trained {sm['epochs']} epochs (validation error "
            f"{100 * sm['val_error']:.2f}%, test {100 * sm['test_error']:.2f}%) is widened to "
            f"{gr['hidden']} units a layer and deepened by one identity layer. Largest output "
            f"difference on 1,024 validation images: {gr['max_abs_output_diff_no_noise']:.2e} "
            f"without noise, {gr['max_abs_output_diff_with_noise']:.2e} with the 1% noise the "
            "grown net trains from. Both nets then train with the same constant-lr SGD.",
            "",
            "| start | validation error per epoch (%) | epochs to the small net's error | "
            "test error |",
            "| --- | --- | --- | --- |",
            f"| Net2Net (grown; {100 * gr['val_error_at_start']:.2f}% before training) | "
            f"{curve(gr['val_error_per_epoch'])} | {gr['epochs_to_small_error']} | "
            f"{100 * gr['test_error']:.2f}% |",
            f"| random | {curve(sc['val_error_per_epoch'])} | {sc['epochs_to_small_error']} | "
            f"{100 * sc['test_error']:.2f}% |",
            "",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="hinton")
    parser.add_argument("--teacher-hidden", type=int, default=1200)
    parser.add_argument("--student-hidden", type=int, default=800)
    parser.add_argument("--teacher-epochs", type=int, default=20)
    parser.add_argument("--student-epochs", type=int, default=20)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--temperature", type=float, default=20.0, help="Hinton: 20")
    parser.add_argument("--alpha", type=float, default=0.9)
    parser.add_argument("--net2net-small-epochs", type=int, default=3)
    parser.add_argument("--net2net-width", type=int, default=256)
    parser.add_argument("--net2net-epochs", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--update", action="store_true", help="keep the other parts' results")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    report: dict[str, Any] = {**provenance("distillation.py")}
    earlier = read_report("distillation") if args.update else None
    for part in args.parts.split(","):
        report[part] = {"hinton": run_hinton, "net2net": run_net2net}[part](args)
    if earlier:
        report = {**earlier, **report}
    report["seconds"] = elapsed()
    print(write_report("distillation", report, to_markdown))


if __name__ == "__main__":
    main()
