"""``squeezer distill``: train a student with a teacher, beside the same student trained on the
labels alone, and print the three errors side by side."""

from __future__ import annotations

import argparse
import copy
from pathlib import Path
from typing import Any

from squeezer.cli.common import (
    UsageError,
    check_fits,
    create_for,
    data_options,
    dataset_splits,
    device_option,
    info,
    json_option,
    load_model,
    model_options,
    positive,
    positive_float,
    write_json,
)

METHODS = ("hinton", "logits", "fitnet", "at", "nst")


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "distill",
        help="train a student with a teacher's knowledge (KD, logits, FitNets, AT, NST)",
        description="Train STUDENT on --dataset with --teacher's knowledge, and (unless "
        "--no-baseline) the same student from the same initial weights on the labels alone "
        "for the same epochs; print the teacher's, the student-alone and the distilled "
        "student's test error and how much of the gap distillation closed. STUDENT is a zoo "
        "name (a fresh model), a checkpoint, a .sqz file or a module:callable factory; the "
        "teacher a checkpoint or .sqz file (several, comma-separated: an ensemble). Example: "
        "squeezer distill resnet20 --teacher resnet56-fashion-mnist.pt --dataset "
        "fashion-mnist --method at --pairs layer1:layer1,layer2:layer2,layer3:layer3",
    )
    p.add_argument("student", metavar="STUDENT", help="zoo name, checkpoint, .sqz or factory")
    p.add_argument("--teacher", required=True, metavar="FILE[,FILE...]", help="the teacher(s)")
    p.add_argument("--dataset", metavar="NAME", help="data (default: the teacher's)")
    p.add_argument(
        "--method",
        choices=METHODS,
        default="hinton",
        help="hinton: softened outputs at --temperature, weighted --alpha (default); "
        "logits: squared distance of the logits; fitnet: hints from --pairs through a "
        "regressor (--hint-epochs), then hinton; at: attention transfer at --pairs (plus "
        "hinton with --alpha > 0); nst: neuron-selectivity transfer at --pairs (plus hinton "
        "with --alpha > 0)",
    )
    p.add_argument(
        "--pairs",
        metavar="S:T[,S:T...]",
        help="fitnet, at, nst: student and teacher module paths to compare, e.g. "
        "layer2:layer2,layer3:layer3 (see 'python -c \"print(model)\"' for the names)",
    )
    p.add_argument(
        "--temperature", type=positive_float, default=4.0, help="softmax temperature (4)"
    )
    p.add_argument(
        "--alpha",
        type=float,
        default=None,
        help="weight of the soft term, 1 - alpha on the labels (hinton, fitnet 0.9; logits "
        "1; at, nst 0: no hinton term)",
    )
    p.add_argument("--beta", type=positive_float, help="at: weight (1000); nst: weight (50)")
    p.add_argument(
        "--hint-epochs", type=int, default=1, metavar="N", help="fitnet: stage-1 epochs (1)"
    )
    p.add_argument("--epochs", type=positive, default=5, metavar="N", help="epochs (5)")
    p.add_argument("--lr", type=positive_float, default=0.05, help="learning rate (0.05)")
    p.add_argument("--batch-size", type=positive, default=128, metavar="N")
    p.add_argument(
        "--no-baseline", action="store_true", help="skip training the student on labels alone"
    )
    p.add_argument("--out", metavar="FILE", help="the distilled student: .pt (default) or .sqz")
    p.add_argument("--force", action="store_true", help="overwrite an existing --out")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    device_option(p)
    model_options(p)
    data_options(p)
    json_option(p)
    p.set_defaults(run=run)


def _pairs(text: str | None, method: str) -> tuple[tuple[str, str], ...]:
    if not text:
        raise UsageError(f"--method {method} compares intermediate tensors: give --pairs S:T,...")
    out = []
    for item in text.split(","):
        s, sep, t = item.strip().partition(":")
        if not sep:
            raise UsageError(f"--pairs: {item!r} is not STUDENT_PATH:TEACHER_PATH")
        out.append((s.strip(), t.strip()))
    return tuple(out)


def method_config(args: argparse.Namespace) -> Any:
    """The distillation config the flags describe."""
    from squeezer.distillation import KD, NST, AttentionTransfer, FitNets, Logits
    from squeezer.errors import ConfigError

    m, alpha, temp = args.method, args.alpha, args.temperature
    if args.pairs and m in ("hinton", "logits"):
        raise UsageError(f"--pairs is for --method fitnet, at or nst, not {m}")
    try:
        if m == "hinton":
            return KD(temperature=temp, alpha=0.9 if alpha is None else alpha)
        if m == "logits":
            return Logits(alpha=1.0 if alpha is None else alpha)
        pairs = _pairs(args.pairs, m)
        if m == "fitnet":
            return FitNets(pairs=pairs, hint_epochs=args.hint_epochs, temperature=temp,
                           alpha=0.9 if alpha is None else alpha)  # fmt: skip
        kd = {"with_kd": bool(alpha), "temperature": temp, "alpha": alpha or 0.0}
        if m == "at":
            return AttentionTransfer(pairs=pairs, beta=args.beta or 1000.0, **kd)
        return NST(pairs=pairs, weight=args.beta or 50.0, **kd)
    except ConfigError as err:
        raise UsageError(str(err)) from None


def run(args: argparse.Namespace) -> int:
    import squeezer as sq
    from squeezer.data import canonical_name
    from squeezer.distillation import Teachers
    from squeezer.errors import ConfigError

    config = method_config(args)
    teachers = []
    for spec in args.teacher.split(","):
        if not Path(spec).is_file():
            raise UsageError(f"--teacher: {spec}: no such file")
        teachers.append(load_model(spec, args))
    teacher = teachers[0][0] if len(teachers) == 1 else Teachers([t for t, _ in teachers])
    dataset = args.dataset or teachers[0][1]["meta"].get("dataset")
    if not dataset:
        raise UsageError("the teacher does not record its dataset: pass --dataset")
    dataset = canonical_name(dataset)
    out = Path(args.out or f"{Path(args.student.split(':')[-1]).stem}-distilled.pt")
    if out.suffix not in (".pt", ".sqz"):
        raise UsageError("--out: the student is written as a .pt checkpoint or a .sqz file")
    if out.exists() and not args.force:
        raise UsageError(f"{out} exists; pass --force to overwrite it or choose --out")
    train, test = dataset_splits(dataset, args.data_dir, limit=args.limit)
    path = Path(args.student)
    if path.exists() or ":" in args.student:
        student, _ = load_model(args.student, args)
    else:
        student = create_for(args.student, train)
    for model, role in ((student, "student"), *((t, "teacher") for t, _ in teachers)):
        check_fits(model, test.input_shape, test.num_classes, f"{dataset} ({role})")
    fit_args = {"epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size}
    verbose = not args.quiet
    result: dict[str, Any] = {
        "student": args.student, "teacher": args.teacher, "dataset": dataset,
        "method": args.method, "config": config.to_dict(), **fit_args,
    }  # fmt: skip
    result["teacher_error"] = 1 - sq.evaluate(teacher, test)["top1"]
    alone = None if args.no_baseline else copy.deepcopy(student)
    info(f"distilling {args.student} from {args.teacher} on {dataset} ({args.method})")
    try:
        sq.distill(student, teacher, train, config, val=test, verbose=verbose,
                   device=args.device, **fit_args)  # fmt: skip
    except ConfigError as err:
        raise UsageError(str(err)) from None
    finally:
        student.cpu(), teacher.cpu()
    result["distilled_error"] = 1 - sq.evaluate(student, test)["top1"]
    if alone is not None:
        info(f"training the same student on the labels alone for {args.epochs} epoch(s)")
        sq.fit(alone, train, val=test, verbose=verbose, device=args.device, **fit_args)
        alone.cpu()
        result["student_alone_error"] = 1 - sq.evaluate(alone, test)["top1"]
        gap = result["student_alone_error"] - result["teacher_error"]
        closed = result["student_alone_error"] - result["distilled_error"]
        result["gap_closed"] = closed / gap if gap > 0 else None
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"dataset": dataset, "distilled_from": args.teacher, "method": args.method}
    if out.suffix == ".sqz":
        sq.save(student, out, meta=meta)
    else:
        sq.save_checkpoint(student, out, meta=meta)
    result["out"] = str(out)
    print(format_table(result))
    info(f"wrote {out}")
    write_json(args.json, result)
    return 0


def format_table(r: dict[str, Any]) -> str:
    rows = [("teacher", r["teacher_error"])]
    if "student_alone_error" in r:
        rows.append(("student, labels alone", r["student_alone_error"]))
    rows.append((f"student, distilled ({r['method']})", r["distilled_error"]))
    width = max(len(name) for name, _ in rows)
    lines = [f"{'model':<{width}}  test error"]
    lines += [f"{n:<{width}}  {100 * e:9.2f}%" for n, e in rows]
    if r.get("gap_closed") is not None:
        lines.append(f"distillation closed {100 * r['gap_closed']:.0f}% of the teacher-student gap")
    return "\n".join(lines)
