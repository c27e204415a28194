"""Helpers shared by the commands: resolving models, reading shapes, writing JSON."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from squeezer.errors import SqueezerError

# Where ``--json -`` writes: the real standard output, while the command's tables are sent to
# standard error so that what stdout carries parses as JSON.
JSON_STREAM: list[Any] = [None]


class UsageError(SqueezerError):
    """Bad command-line input that argparse itself cannot detect."""


FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def is_factory(spec: str) -> bool:
    """Whether ``spec`` reads ``package.module:callable`` (and is no existing file)."""
    return bool(FACTORY.match(spec)) and not Path(spec).exists()


def build_factory(spec: str) -> nn.Module:
    """Call ``package.module:callable`` (uvicorn's convention) and return the model it builds.

    The module is imported from the current folder or the installed packages; the callable
    (a function or a class) is called without arguments.
    """
    module_name, _, attr = spec.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"{spec}: cannot import {module_name} ({exc})") from None
    target: Any = module
    for part in attr.split("."):
        target = getattr(target, part, None)
        if target is None:
            raise UsageError(f"{spec}: {module_name} has no attribute {attr}")
    if not callable(target):
        raise UsageError(f"{spec}: {attr} is not callable")
    try:
        model = target()
    except TypeError as exc:
        raise UsageError(f"{spec}: calling {attr}() failed ({exc})") from None
    if not isinstance(model, nn.Module):
        raise UsageError(f"{spec}: {attr}() returned a {type(model).__name__}, not an nn.Module")
    arch = getattr(model, "squeezer_arch", None)
    if not isinstance(arch, dict):
        model.squeezer_arch = {"factory": spec, "surgery": []}
    return model


def model_argument(p: argparse.ArgumentParser) -> None:
    """The positional MODEL_OR_CHECKPOINT of the commands that change or convert a model."""
    p.add_argument(
        "model",
        metavar="MODEL_OR_CHECKPOINT",
        help="a checkpoint, a .sqz file, a module:callable factory (package.module:function "
        "building your own model; give --input-shape), or a zoo name (random weights)",
    )


def model_options(p: argparse.ArgumentParser, *, files: bool = True) -> None:
    """``--input-shape`` and (for commands reading files) ``--model``."""
    p.add_argument(
        "--input-shape",
        metavar="C,H,W",
        help="shape of one input example, for models that do not record it (a factory's)",
    )
    if files:
        p.add_argument(
            "--model",
            dest="factory",
            metavar="MODULE:CALLABLE",
            help="the architecture a file was saved from when it is not a zoo model: "
            "package.module:callable building a fresh instance",
        )


def load_model(
    spec: str, args: argparse.Namespace | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """A model from a ``.sqz`` file, a checkpoint, a ``module:callable`` factory or, failing
    those, a zoo name (random weights).

    ``args.input_shape`` (``--input-shape``) sets or overrides the shape of one example;
    ``args.factory`` (``--model``) builds the fresh instance a user model's file loads into.

    Returns:
        ``(model, info)`` where ``info`` has ``source`` ("sqz", "checkpoint", "factory" or
        "zoo"), ``meta`` and ``input_shape`` (possibly empty).
    """
    from squeezer.coding.sqz import is_sqz, load_with_header
    from squeezer.models import create, list_models
    from squeezer.train import load_checkpoint, read_checkpoint

    given = getattr(args, "input_shape", None)
    shape_arg = parse_ints(given, "--input-shape") if given else None
    factory = getattr(args, "factory", None)
    fresh = build_factory(factory) if factory else None
    path = Path(spec)
    if path.is_file() and (is_sqz(path) or path.suffix == ".sqz"):
        model, header = load_with_header(path, fresh)
        shape = list(header.get("input_shape") or getattr(model, "input_shape", ()) or ())
        info = {"source": "sqz", "meta": header.get("meta") or {}, "input_shape": shape}
    elif path.exists():
        ckpt = read_checkpoint(path)
        model = load_checkpoint(path, fresh)
        shape = list(ckpt.get("input_shape") or getattr(model, "input_shape", ()) or ())
        info = {"source": "checkpoint", "meta": ckpt.get("meta") or {}, "input_shape": shape}
    elif is_factory(spec):
        model = build_factory(spec)
        shape = list(getattr(model, "input_shape", ()) or ())
        info = {"source": "factory", "meta": {}, "input_shape": shape}
    elif spec in list_models():
        model = create(spec)
        shape = list(getattr(model, "input_shape", ()) or ())
        info = {"source": "zoo", "meta": {}, "input_shape": shape}
    elif any(c in spec for c in "/\\") or path.suffix in (".pt", ".pth", ".sqz"):
        raise UsageError(f"{spec}: no such file")
    else:
        raise UsageError(
            f"{spec}: neither a file, a module:callable factory nor a model name "
            "(see 'squeezer models')"
        )
    if shape_arg:
        info["input_shape"] = shape_arg
        model.input_shape = tuple(shape_arg)
    elif info["input_shape"] and not getattr(model, "input_shape", None):
        model.input_shape = tuple(info["input_shape"])
    return model, info


def parse_ints(text: str, what: str) -> list[int]:
    try:
        values = [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise UsageError(f"{what}: expected comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise UsageError(f"{what}: expected positive integers, got {text!r}")
    return values


def write_json(path: str | None, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` (``-`` for standard output); nothing if ``path`` is None."""
    if path is None:
        return
    text = json.dumps(payload, indent=2, default=_jsonable) + "\n"
    if path == "-":
        (JSON_STREAM[0] or sys.stdout).write(text)
        return
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if isinstance(obj, tuple | set):
        return list(obj)
    return str(obj)


def check_fits(
    model: nn.Module, input_shape: tuple[int, ...], num_classes: int, dataset: str
) -> None:
    """Refuse to run a model on data of the wrong shape, with a readable message."""
    expected = tuple(getattr(model, "input_shape", ()) or ())
    if expected and tuple(expected) != tuple(input_shape):
        raise UsageError(
            f"the model expects inputs of shape {expected} but {dataset} has "
            f"images of shape {tuple(input_shape)}"
        )
    last = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if last and last[-1].out_features != num_classes:
        raise UsageError(
            f"the model has {last[-1].out_features} outputs but {dataset} has {num_classes} classes"
        )


def info(message: str) -> None:
    """A line for the person at the terminal (standard error, so JSON on stdout stays clean)."""
    print(message, file=sys.stderr, flush=True)


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _number(lower: float, *, strict: bool) -> Callable[[str], float]:
    """An argparse type: a float above ``lower`` (``strict``) or at least ``lower``."""
    words = f"> {lower:g}" if strict else f">= {lower:g}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not (value > lower if strict else value >= lower):
            raise argparse.ArgumentTypeError(f"expected a number {words}, got {text}")
        return value

    return parse


positive_float = _number(0, strict=True)
nonnegative_float = _number(0, strict=False)


def data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-dir", metavar="DIR", help="folder to look in first for the dataset's files"
    )
    p.add_argument(
        "--limit",
        type=positive,
        metavar="N",
        help="use only the first N training and N test images (quick runs)",
    )


def device_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--device",
        type=training_device,
        metavar="DEV",
        help="where training runs: cpu (default), cuda, cuda:N or mps; everything else, and "
        "the saved result, stays on the CPU",
    )


def training_device(text: str) -> str:
    """A ``--device`` value, checked: a device PyTorch knows and this machine has."""
    import torch

    try:
        dev = torch.device(text)
    except RuntimeError:
        known = "cpu, cuda, cuda:N, mps"
        raise argparse.ArgumentTypeError(f"unknown device {text!r} ({known})") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"{text}: this PyTorch sees no CUDA GPU")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(
                f"{text}: only {torch.cuda.device_count()} CUDA device(s) here"
            )
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise argparse.ArgumentTypeError(f"{text}: MPS is not available here")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise argparse.ArgumentTypeError(f"unsupported device {text!r} (cpu, cuda, cuda:N, mps)")
    return text


def distill_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--distill",
        action="store_true",
        help="fine-tune with the original model as the teacher (Hinton's distillation, "
        "temperature 4, alpha 0.9) instead of the labels alone: the usual way to recover "
        "accuracy after compression",
    )


def fit_on_device(
    args: argparse.Namespace,
    model: nn.Module,
    *fit_args: Any,
    teacher: nn.Module | None = None,
    **kw: Any,
) -> Any:
    """``sq.fit`` on ``args.device`` (when given); the model comes back to the CPU after.
    With ``args.distill`` and a ``teacher``, ``sq.distill`` with Hinton's loss instead."""
    import squeezer as sq

    device = getattr(args, "device", None)
    try:
        if teacher is not None and getattr(args, "distill", False):
            from squeezer.distillation import KD

            train, *rest = fit_args
            return sq.distill(model, teacher, train, KD(), *rest, device=device, **kw)
        return sq.fit(model, *fit_args, device=device, **kw)
    finally:
        if device is not None:
            model.cpu()
            if teacher is not None:
                teacher.cpu()


def json_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--json",
        metavar="PATH",
        help="also write the results as JSON to PATH ('-' for standard output)",
    )


def layout_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--layout",
        choices=("eager", "deploy"),
        default="eager",
        help="time the models as they are (eager, default) or after BatchNorm folding and "
        "conversion to channels-last, the usual CPU deployment steps (deploy); both models "
        "alike",
    )
    p.add_argument(
        "--backend",
        choices=("eager", "compile", "onnxruntime"),
        default="eager",
        help="what runs the timed models: eager PyTorch (default), torch.compile (Inductor) or "
        "ONNX Runtime (exported to ONNX); both models run on it, alternately, and compile or "
        "export time is reported apart from the latency",
    )


def dataset_splits(
    name: str, data_dir: str | None, *, augment: bool = True, limit: int | None = None
):
    import squeezer.data as sqdata

    train, test = sqdata.load(name, data_dir, augment=augment)
    if limit is not None:
        train, test = train.subset(limit), test.subset(limit)
    return train, test


def create_for(name: str, train: Any) -> Any:
    """Zoo model ``name`` shaped for the images and classes of dataset ``train``."""
    from squeezer.models import accepts, create

    c, h, _ = train.input_shape
    kwargs: dict[str, Any] = {"num_classes": train.num_classes, "in_channels": c}
    if accepts(name, "input_size"):
        kwargs["input_size"] = h
    return create(name, **kwargs)


def measure_and_save(
    args: argparse.Namespace,
    model: Any,
    baseline: Any,
    x: Any,
    result: dict[str, Any],
    dataset: str | None,
    adjective: str,
) -> int:
    """Measure ``model`` against ``baseline``, save it (--out) and write the JSON result."""
    import squeezer as sq

    m = sq.measure(
        model,
        x,
        baseline=baseline,
        batch_sizes=parse_ints(args.batch_sizes, "--batch-sizes"),
        min_run_time=args.min_run_time,
        layout=args.layout,
        backend=args.backend,
    )
    print(m)
    out = Path(args.out or f"{Path(args.model).stem}-{adjective}.sqz")
    meta = {"dataset": dataset}
    if out.suffix == ".sqz":
        sq.save(model, out, meta=meta)
    else:
        sq.save_checkpoint(model, out, meta=meta)
    info(f"wrote {out}")
    write_json(args.json, {**result, **m.to_dict(), "out": str(out)})
    return 0


def transform_options(p: argparse.ArgumentParser, adjective: str, uses: str) -> None:
    """Options shared by the commands that transform a model, fine-tune it and measure it."""
    device_option(p)
    distill_option(p)
    p.add_argument(
        "--finetune-epochs",
        type=int,
        default=0,
        metavar="N",
        help=f"fine-tune the {adjective} model for N epochs (default 0)",
    )
    p.add_argument("--lr", type=positive_float, default=0.01, help="fine-tuning learning rate")
    p.add_argument(
        "--dataset",
        metavar="NAME",
        help=f"data for {uses} (default: the checkpoint's)",
    )
    p.add_argument(
        "--batch-sizes",
        default="1,32",
        metavar="B[,B...]",
        help="batch sizes to time (default: 1,32)",
    )
    p.add_argument(
        "--min-run-time",
        type=positive_float,
        default=0.5,
        metavar="SECONDS",
        help="seconds of timing per model and setting (default 0.5)",
    )
    p.add_argument(
        "--out",
        metavar="FILE",
        help=f"the {adjective} model: .sqz, or a .pt checkpoint (default NAME-{adjective}.sqz)",
    )
    layout_option(p)
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    model_options(p)
    data_options(p)
    json_option(p)


def transform_command(
    args: argparse.Namespace,
    adjective: str,
    transform: Callable[[nn.Module, Any, list[Any] | None], dict[str, Any]],
    *,
    batches: int = 0,
) -> int:
    """The one path of the commands that change a model: load -> transform -> evaluate ->
    recalibrate BatchNorm -> fine-tune -> evaluate -> measure against the original -> save.

    Args:
        args: the command's options (``transform_options`` and ``model_options``).
        adjective: what the model becomes ("pruned", "factorized"), for messages and names.
        transform: changes a copy of the model in place, given one example input and the
            data batches; returns the fields it adds to the JSON result.
        batches: how many batches of ``--dataset`` the transform reads (0: none).
    """
    import copy

    import torch

    import squeezer as sq
    from squeezer.data import canonical_name

    if getattr(args, "distill", False) and not args.finetune_epochs:
        raise UsageError(
            "--distill fine-tunes with the original as teacher: give --finetune-epochs N"
        )
    model, source = load_model(args.model, args)
    shape = source["input_shape"]
    if not shape:
        raise UsageError(f"{args.model}: input shape unknown; pass --input-shape C,H,W")
    x = torch.randn(1, *shape)
    train = test = dataset = None
    if args.finetune_epochs or args.dataset or batches:
        dataset = canonical_name(args.dataset or source["meta"].get("dataset") or "mnist")
        train, test = dataset_splits(dataset, args.data_dir, limit=args.limit)
        check_fits(model, test.input_shape, test.num_classes, dataset)
    data = None
    if batches:
        loader = sq.data.loader(train.without_augment(), 64, shuffle=True, seed=0)
        data = [b for _, b in zip(range(batches), loader, strict=False)]
    changed = copy.deepcopy(model)
    result = transform(changed, x, data)
    if train is not None and test is not None:
        result["top1_before"] = sq.evaluate(model, test)["top1"]
        result[f"top1_{adjective}"] = sq.evaluate(changed, test)["top1"]
        steps = [f"{result['top1_before']:.4f} before", f"{result[f'top1_{adjective}']:.4f} "
                 f"right after"]  # fmt: skip
        if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in changed.modules()):
            sq.train.recalibrate_bn_(changed, train)  # the change shifted the BN inputs
            result["top1_recalibrated"] = sq.evaluate(changed, test)["top1"]
            steps.append(f"{result['top1_recalibrated']:.4f} with BatchNorm re-estimated")
        else:  # nothing to re-estimate: the same model
            result["top1_recalibrated"] = result[f"top1_{adjective}"]
        if args.finetune_epochs:
            fit_on_device(
                args, changed, train, val=test, epochs=args.finetune_epochs, lr=args.lr,
                verbose=not args.quiet, teacher=model,
            )  # fmt: skip
        result["top1_after"] = sq.evaluate(changed, test)["top1"]
        result["dataset"] = dataset
        steps.append(
            f"{result['top1_after']:.4f} after {args.finetune_epochs} fine-tuning epoch(s)"
        )
        info("top-1: " + ", ".join(steps))
    dataset = dataset or source["meta"].get("dataset")
    return measure_and_save(args, changed, model, x, result, dataset, adjective)
