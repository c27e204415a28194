"""Knowledge distillation (issue 14): teachers, students alone and distilled students.

    python benchmarks/distillation.py                                  # every run, in order
    python benchmarks/distillation.py --runs fmnist:teacher,fmnist:alone,fmnist:at
    python benchmarks/distillation.py --runs net2net --report distillation_n2n
    python benchmarks/distillation.py --merge distillation_a,distillation_b  # one report

Each run is ``EXPERIMENT:ROLE`` and adds one row; a teacher run saves its weights under
``benchmarks/results/checkpoints/`` and the students' runs load them, so the runs of one
experiment can go to separate processes (or machines) and be merged afterwards. The report is
rewritten after every run, so a run that is stopped loses only itself.

- ``hinton``: Hinton, Vinyals & Dean's MNIST experiment at this machine's scale: a
  784-1200-1200-10 teacher trained with dropout and jittered inputs (random crops), a
  784-800-800-10 student trained on the labels alone with no regularization (``alone``), and
  the same student (same initial weights, epochs and images, no jitter) distilled at
  temperature T (``kd@T``). Published (full-length training): 67 / 146 / 74 test errors.
  Target: distillation closes >= 60% of the teacher-student gap.
- ``fmnist``: a ResNet-56 teacher and a ResNet-20 student on Fashion-MNIST; the student alone
  and distilled with Hinton's KD, FitNets, attention transfer, NST and logit regression, all
  from the same initial weights for the same number of passes over the data (FitNets' hint
  stage counts as one of them). Target: each beats the student alone; the best closes >= 50%.
- ``recovery``: a ResNet-20 trained as in ``structured_accuracy.py`` (6 epochs) loses 32% of
  every coupled channel group (L2 criterion, 2.1x fewer FLOPs), its BatchNorm statistics are
  re-estimated, then it is fine-tuned for the same epochs with the labels alone (``alone``)
  or with the unpruned model as teacher (``kd``), over several seeds. Target: distillation
  leaves a smaller drop.
- ``net2net``: a 784-64-64-10 MLP widened to 256 units a layer and deepened by an identity
  layer; outputs compared; then trained on beside the same grown net from a random start.
- ``tree`` (``alone``, ``kd@T``) and ``ternary`` (``alone``, ``kd``): D8's students (a
  depth-8 soft decision tree, a TWN 2 x 800 MLP) from the labels or from the Hinton teacher.
- ``bucila`` (``ensemble``, ``alone``, ``munge``, ``jitter``): D1, three teachers trained on
  1,000 labelled images label a MUNGE or jittered transfer set for a small student.
- ``sgld`` (``chain``, ``alone``, ``kd``): D6's Bayesian dark knowledge, test NLL.
- ``hinton:alone+jitter`` and ``hinton:kd@T+jitter``: the students on the teacher's
  jittered images too (an augmented transfer set).

On 2 CPU cores the ``hinton``, ``fmnist`` and ``recovery`` experiments take hours; the
committed rows of those trained on a GPU (``--device cuda``, several processes at once).

The validation split (5,000 training images) is evaluated each epoch and chooses only the
temperature of the ``hinton`` experiment, where two are run; the test set is read once per
model at the end. ``--fit-seconds`` sets a teacher's epochs from a timing probe of 30
training steps (the JSON records the epochs it chose), for runs on a device lent for minutes.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

import squeezer as sq
from harness import CHECKPOINTS, elapsed, provenance, read_report, write_report
from squeezer.analysis import count_flops
from squeezer.distillation import KD, NST, AttentionTransfer, FitNets, Logits, deepen_, widen_

ALL_RUNS = (
    "hinton:teacher,hinton:alone,hinton:kd@20,hinton:kd@4,"
    "fmnist:teacher,fmnist:alone,fmnist:hinton,fmnist:fitnet,fmnist:at,fmnist:nst,fmnist:logits,"
    "recovery:base,recovery:alone,recovery:kd,net2net"
)
STAGES = ("layers.0", "layers.1", "layers.2")  # the CIFAR ResNets' three stage outputs


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


def cifar_resnet(name: str) -> nn.Module:
    return sq.models.create(name, num_classes=10, in_channels=1, input_size=28)


class Data:
    """Each dataset's training part (augmented and plain), validation split and test set,
    loaded once per process."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[Any, Any, Any, Any]] = {}

    def __call__(self, name: str) -> tuple[Any, Any, Any, Any]:
        if name not in self._cache:
            train, test = sq.data.load(name)
            order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
            fit_aug = train.subset(order[5000:])
            val = train.subset(order[:5000]).without_augment()
            self._cache[name] = (fit_aug, fit_aug.without_augment(), val, test)
        return self._cache[name]


def errors(model: nn.Module, test: Any, device: str) -> int:
    return round((1 - sq.evaluate(model, test, device=device)["top1"]) * len(test))


def epochs_within(
    seconds: float, model: nn.Module, data: Any, args: argparse.Namespace, most: int,
    teacher: nn.Module | None = None, steps: int = 30,
) -> int:  # fmt: skip
    """How many epochs of ``model`` fit in ``seconds``: ``steps`` timed SGD steps on a copy
    (after 5 untimed ones), scaled to an epoch, plus 10% for evaluation; at most ``most``."""
    dev = torch.device(args.device)
    probe = copy.deepcopy(model).to(dev).train()
    opt = torch.optim.SGD(probe.parameters(), lr=1e-4, momentum=0.9)
    batches = sq.data.loader(data, 128, shuffle=True, seed=99)
    stream = itertools.cycle(batches)

    def step() -> None:
        x, y = next(stream)
        x, y = x.to(dev), y.to(dev)
        if teacher is not None:
            with torch.no_grad():
                teacher(x)
        loss = nn.functional.cross_entropy(probe(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(5):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    per_epoch = (time.perf_counter() - t0) / steps * len(batches) * 1.1
    chosen = max(1, min(most, int(seconds / per_epoch)))
    log(f"probe: {per_epoch:.1f} s an epoch -> {chosen} epochs in {seconds:.0f} s")
    return chosen


def save_weights(model: nn.Module, name: str) -> Path:
    CHECKPOINTS.mkdir(parents=True, exist_ok=True)
    path = CHECKPOINTS / name
    torch.save({k: v.cpu() for k, v in model.state_dict().items()}, path)
    return path


def load_weights(model: nn.Module, name: str, role: str) -> nn.Module:
    path = CHECKPOINTS / name
    if not path.exists():
        raise SystemExit(f"{role}: {path} is missing; run the experiment's teacher first")
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()


def history(result: Any) -> list[float]:
    return [round(1 - h["val_top1"], 5) for h in result.history if "val_top1" in h]


# ---------------------------------------------------------------- hinton


HINTON_TEACHER = "distill-hinton-teacher-mnist.pt"


def hinton_common(args: argparse.Namespace) -> dict[str, Any]:
    return {"lr": args.lr, "batch_size": 128, "schedule": "cosine", "weight_decay": 0.0}


def run_hinton(role: str, args: argparse.Namespace, data: Data) -> dict[str, Any]:
    fit_jitter, fit_plain, val, test = data("mnist")
    common = hinton_common(args)
    if role != "teacher" and args.grad_clip:  # every student alike: KD at T = 20 diverges
        common = {**common, "grad_clip": args.grad_clip}  # at lr 0.05 without it
    row: dict[str, Any] = {"training": common, "train_images": len(fit_plain),
                           "test_images": len(test)}  # fmt: skip
    t0 = time.perf_counter()
    if role == "teacher":
        torch.manual_seed(0)
        model = mlp(args.teacher_hidden, dropout=args.teacher_dropout)
        epochs = args.teacher_epochs
        if args.fit_seconds:
            epochs = epochs_within(args.fit_seconds, model, fit_jitter, args, epochs)
        drop = "dropout, " if args.teacher_dropout else ""
        log(f"hinton teacher 2 x {args.teacher_hidden}, {drop}jitter, {epochs} epochs")
        res = sq.fit(model, fit_jitter, epochs=epochs, val=val, verbose=True,
                     device=args.device, **common)  # fmt: skip
        save_weights(model, HINTON_TEACHER)
        row.update(hidden=args.teacher_hidden, dropout=args.teacher_dropout, jitter=True)
    else:
        torch.manual_seed(1)
        model = mlp(args.student_hidden, dropout=False)
        epochs = args.student_epochs
        jittered = role.endswith("+jitter")  # the student sees the teacher's random crops too
        images = fit_jitter if jittered else fit_plain
        role = role.removesuffix("+jitter")
        if role == "alone":
            log(f"hinton student 2 x {args.student_hidden}, labels alone, {epochs} epochs")
            res = sq.fit(model, images, epochs=epochs, val=val, verbose=True,
                         device=args.device, **common)  # fmt: skip
        else:
            temperature = float(role.removeprefix("kd@"))
            method = KD(temperature=temperature, alpha=args.alpha)
            teacher = load_weights(mlp(args.teacher_hidden, args.teacher_dropout),
                                   HINTON_TEACHER, role)  # fmt: skip
            log(f"hinton student distilled, {method}, {epochs} epochs")
            res = sq.distill(model, teacher, images, method, epochs=epochs, val=val,
                             verbose=True, device=args.device, **common)  # fmt: skip
            row["method"] = method.to_dict()
        row.update(hidden=args.student_hidden, dropout=False, jitter=jittered)
    row.update(epochs=epochs, val_error_per_epoch=history(res),
               test_errors=errors(model, test, args.device),
               seconds=time.perf_counter() - t0)  # fmt: skip
    return row


# ---------------------------------------------------------------- fmnist


FMNIST_TEACHER = "distill-resnet56-fashion-mnist.pt"


def fmnist_method(role: str, args: argparse.Namespace) -> Any:
    t, a = args.fmnist_temperature, args.alpha
    pairs = tuple((p, p) for p in STAGES)
    return {
        "hinton": KD(temperature=t, alpha=a),
        "fitnet": FitNets(pairs=(("layers.1", "layers.1"),), hint_epochs=1, temperature=t, alpha=a),
        "at": AttentionTransfer(pairs=pairs, beta=1000.0),
        "nst": NST(pairs=(("layers.2", "layers.2"),), weight=50.0),
        "logits": Logits(alpha=0.5),
    }[role]


def run_fmnist(role: str, args: argparse.Namespace, data: Data) -> dict[str, Any]:
    fit, _, val, test = data("fashion-mnist")
    common = {"lr": args.lr, "batch_size": 128, "schedule": "cosine", "weight_decay": 5e-4}
    row: dict[str, Any] = {"training": common, "test_images": len(test), "train_images": len(fit)}
    t0 = time.perf_counter()
    if role in ("teacher", "teacher+"):
        torch.manual_seed(0)
        model = cifar_resnet(args.fmnist_teacher)
        epochs = args.fmnist_teacher_epochs
        if role == "teacher+":  # a second cosine cycle (warm restart) from the saved teacher
            load_weights(model, FMNIST_TEACHER, role).train()
            row["earlier_epochs"] = args.fmnist_teacher_earlier_epochs
        if args.fit_seconds:
            epochs = epochs_within(args.fit_seconds, model, fit, args, epochs)
        log(f"fmnist teacher {args.fmnist_teacher}, {epochs} epochs")
        res = sq.fit(model, fit, epochs=epochs, val=val, verbose=True, device=args.device,
                     **common)  # fmt: skip
        save_weights(model, FMNIST_TEACHER)
        row["model"] = args.fmnist_teacher
    else:
        torch.manual_seed(1)
        model = cifar_resnet("resnet20")
        epochs = args.fmnist_epochs
        row["model"] = "resnet20"
        if role == "alone":
            log(f"fmnist student alone, {epochs} epochs")
            res = sq.fit(model, fit, epochs=epochs, val=val, verbose=True, device=args.device,
                         **common)  # fmt: skip
        else:
            method = fmnist_method(role, args)
            teacher = load_weights(cifar_resnet(args.fmnist_teacher), FMNIST_TEACHER, role)
            passes = epochs - method.hint_epochs if isinstance(method, FitNets) else epochs
            log(f"fmnist student, {method}, {passes} epochs after any hint stage")
            res = sq.distill(model, teacher, fit, method, epochs=passes, val=val, verbose=True,
                             device=args.device, **common)  # fmt: skip
            row.update(method=type(method).__name__, config=method.to_dict())
    row.update(epochs=epochs, val_error_per_epoch=history(res),
               test_error=1 - sq.evaluate(model, test, device=args.device)["top1"],
               params=sum(p.numel() for p in model.parameters()),
               seconds=time.perf_counter() - t0)  # fmt: skip
    return row


# ---------------------------------------------------------------- recovery


RECOVERY_BASE = "distill-recovery-resnet20-fashion-mnist.pt"


def pruned_base(args: argparse.Namespace, data: Data) -> tuple[nn.Module, nn.Module, dict]:
    fit, _, _, test = data("fashion-mnist")
    base = load_weights(cifar_resnet("resnet20"), RECOVERY_BASE, "recovery")
    x = sq.data.example_inputs(test)
    pruned = sq.prune_channels(base, x, args.recovery_ratio, "l2")
    sq.train.recalibrate_bn_(pruned, fit.without_augment())
    flops = (count_flops(base, x)[0], count_flops(pruned, x)[0])
    return (
        base,
        pruned,
        {
            "flops_reduction": flops[0] / flops[1],
            "params": sum(p.numel() for p in pruned.parameters()),
            "baseline_params": sum(p.numel() for p in base.parameters()),
        },
    )


def run_recovery(role: str, args: argparse.Namespace, data: Data) -> dict[str, Any]:
    fit, _, _, test = data("fashion-mnist")
    t0 = time.perf_counter()
    if role == "base":
        torch.manual_seed(0)
        model = cifar_resnet("resnet20")
        log("recovery base: resnet20, 6 epochs (structured_accuracy.py's schedule)")
        sq.fit(model, fit, epochs=6, lr=0.05, verbose=True, device=args.device)
        save_weights(model, RECOVERY_BASE)
        return {"model": "resnet20", "epochs": 6, "lr": 0.05,
                "test_error": 1 - sq.evaluate(model, test, device=args.device)["top1"],
                "seconds": time.perf_counter() - t0}  # fmt: skip
    base, pruned, sizes = pruned_base(args, data)
    before = 1 - sq.evaluate(pruned, test, device=args.device)["top1"]
    base_err = 1 - sq.evaluate(base, test, device=args.device)["top1"]
    method = KD(temperature=args.fmnist_temperature, alpha=args.alpha) if role == "kd" else None
    common = {"lr": 0.01, "batch_size": 128, "schedule": "cosine"}
    per_seed = []
    for seed in range(args.recovery_seeds):
        model = copy.deepcopy(pruned)
        log(f"recovery {role}, seed {seed}: {args.recovery_epochs} epochs")
        if method is None:
            sq.fit(model, fit, epochs=args.recovery_epochs, seed=seed, device=args.device,
                   **common)  # fmt: skip
        else:
            sq.distill(model, base, fit, method, epochs=args.recovery_epochs, seed=seed,
                       device=args.device, **common)  # fmt: skip
        per_seed.append(1 - sq.evaluate(model, test, device=args.device)["top1"])
    mean = sum(per_seed) / len(per_seed)
    return {"model": "resnet20", "criterion": "l2", "ratio": args.recovery_ratio, **sizes,
            "base_test_error": base_err, "pruned_bn_recalibrated_test_error": before,
            "epochs": args.recovery_epochs, "training": common,
            "method": None if method is None else method.to_dict(),
            "test_error_per_seed": per_seed, "test_error_mean": mean,
            "drop_points_mean": 100 * (mean - base_err),
            "seconds": time.perf_counter() - t0}  # fmt: skip


# ---------------------------------------------------------------- other students (CPU-sized)


def nll(model: nn.Module, test: Any) -> float:
    return float(sq.evaluate(model, test)["loss"])


def hinton_teacher() -> nn.Module:
    return load_weights(mlp(1200, True), HINTON_TEACHER, "the Hinton teacher")


def run_tree(role: str, args: argparse.Namespace, data: Data) -> dict[str, Any]:
    """Frosst & Hinton's soft decision tree on MNIST, from the labels or from the teacher."""
    from squeezer.distillation import SoftDecisionTree, TreeBalance

    _, fit, val, test = data("mnist")
    torch.manual_seed(1)
    tree = SoftDecisionTree(28 * 28, 10, depth=args.tree_depth)
    common = {"lr": 0.02, "batch_size": 128, "schedule": "cosine", "weight_decay": 0.0}
    balance = TreeBalance(tree, lam=0.1)
    t0 = time.perf_counter()
    log(f"tree depth {args.tree_depth}, {role}, {args.tree_epochs} epochs")
    if role == "alone":
        res = sq.fit(tree, fit, epochs=args.tree_epochs, val=val, callbacks=[balance],
                     verbose=True, **common)  # fmt: skip
        method = None
    else:
        temperature = float(role.partition("@")[2] or args.tree_temperature)
        method = KD(temperature=temperature, alpha=args.alpha)
        res = sq.distill(tree, hinton_teacher(), fit, method, epochs=args.tree_epochs, val=val,
                         callbacks=[balance], verbose=True, **common)  # fmt: skip
    return {"depth": args.tree_depth, "leaves": 2**args.tree_depth, "epochs": args.tree_epochs,
            "training": common, "balance_lambda": 0.1,
            "method": None if method is None else method.to_dict(),
            "val_error_per_epoch": history(res), "test_error": 1 - sq.evaluate(tree, test)["top1"],
            "params": sum(p.numel() for p in tree.parameters()),
            "seconds": time.perf_counter() - t0}  # fmt: skip


def run_ternary(role: str, args: argparse.Namespace, data: Data) -> dict[str, Any]:
    """Polino et al.'s quantized distillation: Hinton's 2 x 800 student with ternary weights
    (TWN, every layer), from the labels or distilled from the Hinton teacher."""
    _, fit, val, test = data("mnist")
    torch.manual_seed(1)
    student = mlp(args.student_hidden, dropout=False)
    config = sq.quantization.TWN(first_last_bits=None)
    sq.quantize_(student, config, torch.zeros(1, 1, 28, 28))
    common = {"lr": 0.02, "batch_size": 128, "schedule": "cosine", "weight_decay": 0.0,
              "grad_clip": 5.0}  # fmt: skip
    t0 = time.perf_counter()
    log(f"ternary student, {role}, {args.ternary_epochs} epochs")
    method = None
    if role == "alone":
        res = sq.fit(student, fit, epochs=args.ternary_epochs, val=val, verbose=True, **common)
    else:
        method = KD(temperature=args.fmnist_temperature, alpha=args.alpha)
        res = sq.distill(student, hinton_teacher(), fit, method, epochs=args.ternary_epochs,
                         val=val, verbose=True, **common)  # fmt: skip
    levels = max(len(torch.unique(m.quantized_weight().detach()))
                 for m in student.modules() if hasattr(m, "quantized_weight"))  # fmt: skip
    return {"hidden": args.student_hidden, "quantization": config.to_dict(),
            "max_distinct_weights_per_layer": levels, "epochs": args.ternary_epochs,
            "training": common, "method": None if method is None else method.to_dict(),
            "val_error_per_epoch": history(res),
            "test_errors": errors(student, test, "cpu"),
            "seconds": time.perf_counter() - t0}  # fmt: skip


def run_bucila(role: str, args: argparse.Namespace, data: Data) -> dict[str, Any]:
    """Bucila et al.'s model compression with little labelled data: an ensemble of three
    dropout MLPs trained on ``--bucila-labelled`` MNIST images labels a larger transfer set
    (MUNGE samples, or jittered copies of the same images) for a 2 x 200 student."""
    from squeezer.distillation import Teachers, munge, unlabelled

    jitter, plain, val, test = data("mnist")
    n = args.bucila_labelled
    few, few_jitter = plain.subset(range(n)), jitter.subset(range(n))
    rounds = args.bucila_rounds
    epochs = args.bucila_epochs
    t0 = time.perf_counter()
    common = {"lr": 0.05, "batch_size": 128, "schedule": "cosine", "weight_decay": 0.0}
    row: dict[str, Any] = {"labelled": n, "student": "2 x 200", "training": common}
    path = CHECKPOINTS / "distill-bucila-ensemble.pt"
    members = []
    for k in range(3):
        torch.manual_seed(10 + k)
        members.append(mlp(1200, dropout=True))
    ensemble = Teachers(members)
    if role == "ensemble":
        for k, m in enumerate(members):
            log(f"bucila: ensemble member {k + 1}/3 on {n} images, 300 epochs")
            sq.fit(m, few_jitter, epochs=300, seed=k, **common)
        CHECKPOINTS.mkdir(parents=True, exist_ok=True)
        torch.save(ensemble.state_dict(), path)
        return {**row, "members": "3 x (2 x 1200, dropout, jitter)", "epochs": 300,
                "test_error": 1 - sq.evaluate(ensemble.eval(), test)["top1"],
                "seconds": time.perf_counter() - t0}  # fmt: skip
    if not path.exists():
        raise SystemExit(f"bucila:{role}: run bucila:ensemble first ({path} is missing)")
    ensemble.load_state_dict(torch.load(path, weights_only=True))
    ensemble.eval()
    torch.manual_seed(1)
    student = mlp(200, dropout=False)
    if role == "alone":  # the same number of steps as the students on the transfer set
        log(f"bucila: student on the {n} labels, {epochs * (rounds + 1)} epochs")
        res = sq.fit(student, few, epochs=epochs * (rounds + 1), val=val, **common)
    else:
        imgs = torch.cat([b[0] for b in sq.data.loader(few, 256)])
        if role == "munge":
            extra = munge(imgs, rounds=rounds, p=0.5, s=10.0, seed=0)
        else:  # jittered copies: the dataset's own random crops
            extra = torch.cat([torch.cat([b[0] for b in sq.data.loader(few_jitter, 256,
                               seed=r)]) for r in range(rounds)])  # fmt: skip
        transfer = torch.cat([imgs, extra])
        order = torch.randperm(len(transfer), generator=torch.Generator().manual_seed(0))
        batches = unlabelled(transfer[order], 128)
        log(f"bucila: student on {len(transfer)} ensemble-labelled images ({role}), "
            f"{epochs} epochs")  # fmt: skip
        res = sq.distill(student, ensemble, batches, KD(temperature=1.0, alpha=1.0),
                         epochs=epochs, val=val, **common)  # fmt: skip
        row["transfer_set"] = len(transfer)
    return {**row, "epochs": len(res.history), "val_error_per_epoch": history(res),
            "test_error": 1 - sq.evaluate(student, test)["top1"],
            "seconds": time.perf_counter() - t0}  # fmt: skip


def run_sgld(role: str, args: argparse.Namespace, data: Data) -> dict[str, Any]:
    """Bayesian dark knowledge: a 2 x 400 MLP's SGLD posterior samples as the teacher of a
    2 x 400 student; test error and test NLL (the paper's measure) against the point
    estimate the chain starts from and a student trained on the labels."""
    from squeezer.distillation import Teachers, sgld_ensemble

    _, fit, val, test = data("mnist")
    t0 = time.perf_counter()
    common = {"lr": 0.05, "batch_size": 128, "schedule": "cosine", "weight_decay": 5e-4}
    path = CHECKPOINTS / "distill-sgld-samples.pt"
    if role == "chain":
        torch.manual_seed(0)
        start = mlp(400, dropout=False)
        log("sgld: the point estimate, 5 epochs")
        sq.fit(start, fit, epochs=5, **common)
        log(f"sgld: {args.sgld_samples} samples")
        ens = sgld_ensemble(start, fit, samples=args.sgld_samples, burn_in=1000, thin=200,
                            lr=args.sgld_lr, prior_precision=1.0, seed=0)  # fmt: skip
        torch.save({"start": start.state_dict(), "samples": ens.state_dict()}, path)
        return {"chain": {"samples": args.sgld_samples, "burn_in": 1000, "thin": 200,
                          "lr": args.sgld_lr, "prior_precision": 1.0},
                "point_estimate": {"test_error": 1 - sq.evaluate(start, test)["top1"],
                                   "test_nll": nll(start, test)},
                "ensemble": {"test_error": 1 - sq.evaluate(ens, test)["top1"],
                             "test_nll": nll(ens, test)},
                "seconds": time.perf_counter() - t0}  # fmt: skip
    if not path.exists():
        raise SystemExit(f"sgld:{role}: run sgld:chain first ({path} is missing)")
    saved = torch.load(path, weights_only=True)
    ens = Teachers([mlp(400, dropout=False) for _ in range(args.sgld_samples)])
    ens.load_state_dict(saved["samples"])
    ens.eval()
    torch.manual_seed(1)
    student = mlp(400, dropout=False)
    log(f"sgld student, {role}, {args.sgld_epochs} epochs")
    if role == "alone":
        res = sq.fit(student, fit, epochs=args.sgld_epochs, val=val, **common)
    else:
        res = sq.distill(student, ens, fit, KD(temperature=1.0, alpha=1.0),
                         epochs=args.sgld_epochs, val=val, **common)  # fmt: skip
    return {"epochs": args.sgld_epochs, "training": common, "val_error_per_epoch": history(res),
            "test_error": 1 - sq.evaluate(student, test)["top1"], "test_nll": nll(student, test),
            "seconds": time.perf_counter() - t0}  # fmt: skip


# ---------------------------------------------------------------- net2net


def run_net2net(role: str, args: argparse.Namespace, data: Data) -> dict[str, Any]:
    _, fit_part, val, test = data("mnist")
    common = {"lr": args.lr, "batch_size": 128, "weight_decay": 0.0, "schedule": "constant"}
    torch.manual_seed(0)
    small = mlp(64, dropout=False)
    log(f"net2net: small 2 x 64, {args.net2net_small_epochs} epochs")
    sq.fit(small, fit_part, epochs=args.net2net_small_epochs, verbose=True, **common)
    small_err = 1 - sq.evaluate(small, val)["top1"]
    x = torch.cat([b[0] for _, b in zip(range(4), sq.data.loader(val, 256, shuffle=False),
                                        strict=False)])  # fmt: skip

    def grow(noise: float) -> nn.Module:
        net = copy.deepcopy(small)
        widen_(net, "1", "3", args.net2net_width, noise=noise, seed=0)
        widen_(net, "3", "5", args.net2net_width, noise=noise, seed=1)
        deepen_(net, "4")  # an identity layer after the second ReLU
        return net.eval()

    exact, grown = grow(0.0), grow(0.01)
    with torch.no_grad():
        small.eval()
        exact_diff = float((small(x) - exact(x)).abs().max())
        diff = float((small(x) - grown(x)).abs().max())
    grown_err0 = 1 - sq.evaluate(grown, val)["top1"]
    torch.manual_seed(2)
    scratch = copy.deepcopy(grown)
    for m in scratch.modules():
        if isinstance(m, nn.Linear):
            m.reset_parameters()
    curves = {}
    for name, model in (("grown", grown), ("scratch", scratch)):
        log(f"net2net {name}: {args.net2net_epochs} epochs")
        res = sq.fit(model, fit_part, epochs=args.net2net_epochs, val=val, verbose=True,
                     **common)  # fmt: skip
        curves[name] = history(res)

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


EXPERIMENTS: dict[str, Callable[[str, argparse.Namespace, Data], dict[str, Any]]] = {
    "hinton": run_hinton,
    "fmnist": run_fmnist,
    "recovery": run_recovery,
    "net2net": run_net2net,
    "tree": run_tree,
    "ternary": run_ternary,
    "bucila": run_bucila,
    "sgld": run_sgld,
}


# ---------------------------------------------------------------- report


def on(*rows: dict[str, Any]) -> str:
    """Where rows trained, e.g. ``Trained on cuda (torch 2.11.0+cu130).``"""
    where = sorted({f"{r.get('device', 'cpu')} (torch {r.get('torch', '?')})" for r in rows})
    return f" Trained on {', '.join(where)}."


def closed(alone: float, teacher: float, student: float) -> float | None:
    gap = alone - teacher
    return (alone - student) / gap if gap > 0 else None


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.0f}%"


def hinton_md(rows: dict[str, Any], exp: str = "hinton") -> list[str]:
    t, a = rows.get(f"{exp}:teacher"), rows.get(f"{exp}:alone")
    kds = sorted((k for k in rows if k.startswith(f"{exp}:kd@") and not k.endswith("+jitter")),
                 key=lambda k: float(k.split("@")[1]))  # fmt: skip
    if not (t and a and kds):
        return []
    best = min(kds, key=lambda k: rows[k]["val_error_per_epoch"][-1])
    tr = t["training"]
    clip = a["training"].get("grad_clip")
    out = [
        f"## Hinton's MNIST experiment ({exp})",
        "",
        f"SGD (momentum 0.9) at lr {tr['lr']}, cosine, batch {tr['batch_size']}, no weight "
        f"decay; {t['train_images']:,} training images (5,000 held out for validation); the "
        "teacher with random-crop jitter (and dropout, where the table says so), the students "
        "without either, from the "
        "same initial weights, on the same images for the same epochs. Errors are out of "
        f"{t['test_images']:,} test images."
        + (" The validation error picks the temperature." if len(kds) > 1 else "")
        + on(t, a, *(rows[k] for k in kds))
        + (
            f" Every student's gradient norm is clipped at {clip:g} (without it, KD at T = 20 "
            "diverges at this learning rate)."
            if clip
            else ""
        ),
        "",
        "| network | hidden units | epochs | validation error | test errors | published |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| teacher ({'dropout, ' if t.get('dropout', True) else ''}jitter) | "
        f"2 x {t['hidden']} | {t['epochs']} | "
        f"{100 * t['val_error_per_epoch'][-1]:.2f}% | {t['test_errors']} | 67 |",
        f"| student, labels alone | 2 x {a['hidden']} | {a['epochs']} | "
        f"{100 * a['val_error_per_epoch'][-1]:.2f}% | {a['test_errors']} | 146 |",
    ]
    for k in kds:
        r, m = rows[k], rows[k]["method"]
        mark = " (chosen)" if k == best and len(kds) > 1 else ""
        out.append(
            f"| student, distilled (T = {m['temperature']:g}, alpha = {m['alpha']:g}){mark} | "
            f"2 x {r['hidden']} | {r['epochs']} | {100 * r['val_error_per_epoch'][-1]:.2f}% | "
            f"{r['test_errors']} | 74 (T = 20) |"
        )
    c = closed(a["test_errors"], t["test_errors"], rows[best]["test_errors"])
    chosen = "the temperature chosen on validation" if len(kds) > 1 else "its one temperature"
    out += [
        "",
        f"Distillation ({chosen}) closed {_pct(c)} of the "
        f"teacher-student gap (issue 14's target: >= 60%: "
        f"{'met' if c is not None and c >= 0.6 else 'missed'}; published: 90%).",
        "",
    ]
    # a student alone does not depend on the teacher: a comparison without its own jittered
    # student alone uses the first comparison's (same seed, epochs and clipping)
    ja = rows.get(f"{exp}:alone+jitter") or rows.get("hinton:alone+jitter")
    jk = [k for k in rows if k.startswith(f"{exp}:kd@") and k.endswith("+jitter")]
    if ja and jk:
        out += [
            "With the teacher's jitter (random crops) on the students' images too, a transfer "
            "set augmented as in D1 (the same epochs and clipping)."
            + on(ja, *(rows[k] for k in jk)),
            "",
            "| network | epochs | validation error | test errors | gap closed |",
            "| --- | --- | --- | --- | --- |",
            f"| student, labels alone, jitter | {ja['epochs']} | "
            f"{100 * ja['val_error_per_epoch'][-1]:.2f}% | {ja['test_errors']} | |",
        ]
        for k in jk:
            r, m = rows[k], rows[k]["method"]
            cj = closed(ja["test_errors"], t["test_errors"], r["test_errors"])
            c0 = closed(a["test_errors"], t["test_errors"], r["test_errors"])
            out.append(
                f"| student, distilled (T = {m['temperature']:g}), jitter | {r['epochs']} | "
                f"{100 * r['val_error_per_epoch'][-1]:.2f}% | {r['test_errors']} | "
                + (
                    f"{_pct(cj)} of the gap to the jittered student alone"
                    if cj is not None
                    else "none: the jittered student alone beats the teacher"
                )
                + f" ({_pct(c0)} of the gap to the plain one) |"
            )
        out.append("")
    return out


FMNIST_NAMES = {"hinton": "Hinton KD", "fitnet": "FitNets", "at": "attention transfer",
                "nst": "NST", "logits": "logit regression"}  # fmt: skip


def fmnist_md(rows: dict[str, Any], exp: str = "fmnist") -> list[str]:
    t = rows.get(f"{exp}:teacher+") or rows.get(f"{exp}:teacher")
    a = rows.get(f"{exp}:alone")
    if not (t and a):
        return []
    tr = a["training"]
    t_epochs = f"{t['epochs']} epochs"
    if t.get("earlier_epochs"):
        t_epochs = f"{t['earlier_epochs']} + {t['epochs']} epochs (two cosine cycles)"
    out = [
        f"## Fashion-MNIST: five methods side by side ({exp})",
        "",
        f"Teacher {t['model']} ({t['params']:,} parameters, {t_epochs}); student "
        f"ResNet-20 ({a['params']:,} parameters), every student {a['epochs']} passes over "
        f"{a.get('train_images', 55000):,} training images from the same initial weights "
        f"(SGD lr {tr['lr']}, cosine, "
        f"weight decay {tr['weight_decay']}, batch {tr['batch_size']}, random crops). "
        "Gap closed = (student alone - distilled) / (student alone - teacher), test error."
        + on(*(r for k, r in rows.items() if k.startswith(f"{exp}:"))),
        "",
        "| model | method | settings | validation error | test error | gap closed |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| {t['model']} | teacher | {t_epochs} | "
        f"{100 * t['val_error_per_epoch'][-1]:.2f}% | {100 * t['test_error']:.2f}% | |",
        f"| resnet20 | labels alone | | {100 * a['val_error_per_epoch'][-1]:.2f}% | "
        f"{100 * a['test_error']:.2f}% | |",
    ]
    gaps = {}
    for role, name in FMNIST_NAMES.items():
        r = rows.get(f"{exp}:{role}")
        if not r:
            continue
        c = closed(a["test_error"], t["test_error"], r["test_error"])
        gaps[name] = c
        cfg = {k: v for k, v in r["config"].items() if k != "pairs"}
        if cfg.get("with_kd") is False:  # the KD settings are unused then
            cfg = {k: v for k, v in cfg.items() if k not in ("with_kd", "temperature", "alpha")}
        where = ", ".join(s for s, _ in r["config"].get("pairs", ()))
        settings = ", ".join(f"{k} {v}" for k, v in cfg.items())
        settings += f"; at {where}" if where else ""
        out.append(
            f"| resnet20 | {name} | {settings} | {100 * r['val_error_per_epoch'][-1]:.2f}% | "
            f"{100 * r['test_error']:.2f}% | {_pct(c)} |"
        )
    if gaps:
        beat = [n for n, c in gaps.items() if c is not None and c > 0]
        best = max(gaps, key=lambda n: -1e9 if gaps[n] is None else gaps[n])
        out += [
            "",
            f"Beat the student alone: {len(beat)} of {len(gaps)} ({', '.join(beat) or 'none'}). "
            f"Best: {best}, {_pct(gaps[best])} of the gap (target: every method beats the "
            "student alone and the best closes >= 50%: "
            f"{'met' if len(beat) == len(gaps) and (gaps[best] or 0) >= 0.5 else 'missed'}).",
        ]
    return [*out, ""]


def recovery_md(rows: dict[str, Any]) -> list[str]:
    a, k = rows.get("recovery:alone"), rows.get("recovery:kd")
    if not (a and k):
        return []
    out = [
        "## Recovery after pruning: fine-tuning with and without the unpruned teacher",
        "",
        f"ResNet-20 on Fashion-MNIST (test error {100 * a['base_test_error']:.2f}%), "
        f"{100 * a['ratio']:.0f}% of every coupled channel group removed by the L2 criterion "
        f"({a['flops_reduction']:.2f}x fewer FLOPs, {a['params']:,} of "
        f"{a['baseline_params']:,} parameters), BatchNorm re-estimated (test error then "
        f"{100 * a['pruned_bn_recalibrated_test_error']:.2f}%), then {a['epochs']} epochs "
        f"at lr {a['training']['lr']} (cosine) per seed." + on(a, k),
        "",
        "| fine-tuning | test error per seed | mean | drop from the unpruned model (points) |",
        "| --- | --- | --- | --- |",
    ]
    for name, r in (
        ("labels alone", a),
        (
            f"KD from the unpruned model (T = {k['method']['temperature']:g}, alpha = "
            f"{k['method']['alpha']:g})",
            k,
        ),
    ):
        seeds = ", ".join(f"{100 * e:.2f}%" for e in r["test_error_per_seed"])
        out.append(f"| {name} | {seeds} | {100 * r['test_error_mean']:.2f}% | "
                   f"{r['drop_points_mean']:.2f} |")  # fmt: skip
    smaller = k["drop_points_mean"] < a["drop_points_mean"]
    out += ["", f"Distillation leaves a {'smaller' if smaller else 'larger'} mean drop "
            f"({k['drop_points_mean']:.2f} against {a['drop_points_mean']:.2f} points; target: "
            f"smaller: {'met' if smaller else 'missed'}).", ""]  # fmt: skip
    return out


def net2net_md(n: dict[str, Any] | None) -> list[str]:
    if not n:
        return []
    sm, gr, sc = n["small"], n["grown"], n["scratch"]

    def curve(c: list[float]) -> str:
        return ", ".join(f"{100 * e:.2f}" for e in c)

    return [
        "## Net2Net: growing a trained network against training the big one from scratch",
        "",
        f"A 784-64-64-10 MLP trained {sm['epochs']} epochs (validation error "
        f"{100 * sm['val_error']:.2f}%, test {100 * sm['test_error']:.2f}%) is widened to "
        f"{gr['hidden']} units a layer and deepened by one identity layer. Largest output "
        f"difference on 1,024 validation images: {gr['max_abs_output_diff_no_noise']:.2e} "
        f"without noise, {gr['max_abs_output_diff_with_noise']:.2e} with the 1% noise the "
        "grown net trains from. Both nets then train with the same constant-lr SGD.",
        "",
        "| start | validation error per epoch (%) | epochs to the small net's error | test error |",
        "| --- | --- | --- | --- |",
        f"| Net2Net (grown; {100 * gr['val_error_at_start']:.2f}% before training) | "
        f"{curve(gr['val_error_per_epoch'])} | {gr['epochs_to_small_error']} | "
        f"{100 * gr['test_error']:.2f}% |",
        f"| random | {curve(sc['val_error_per_epoch'])} | {sc['epochs_to_small_error']} | "
        f"{100 * sc['test_error']:.2f}% |",
        "",
    ]


def others_md(rows: dict[str, Any]) -> list[str]:
    """D1 (Bucila), D6 (Bayesian dark knowledge) and D8 (tree, ternary) on MNIST."""
    out: list[str] = []
    ta, tk = rows.get("tree:alone"), any(k.startswith("tree:kd") for k in rows)
    qa, qk = rows.get("ternary:alone"), rows.get("ternary:kd")
    if (ta and tk) or (qa and qk):
        out += [
            "## Other students on MNIST (D8): a soft decision tree and a ternary network",
            "",
            "Teacher: the Hinton experiment's 2 x 1200 network. Students from the same initial "
            "weights for the same epochs, from the labels or distilled (SGD, cosine, no weight "
            "decay). Published: Frosst & Hinton's depth-8 tree 94.45% from the labels, 96.76% "
            "distilled (accuracy)."
            + on(*(r for k, r in rows.items() if k.startswith(("tree:", "ternary:")))),
            "",
            "| student | size | epochs | from the labels: test error | distilled | KD |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        tree_kds = [r for k, r in rows.items() if k.startswith("tree:kd") and ta]
        best = min(tree_kds, key=lambda r: r["val_error_per_epoch"][-1]) if tree_kds else None
        for r in sorted(tree_kds, key=lambda r: r["method"]["temperature"]):
            m = r["method"]
            mark = " (chosen on validation)" if r is best and len(tree_kds) > 1 else ""
            out.append(
                f"| soft decision tree, depth {ta['depth']} (balance penalty "
                f"{ta['balance_lambda']:g}) | {ta['params']:,} parameters | {ta['epochs']} | "
                f"{100 * ta['test_error']:.2f}% | {100 * r['test_error']:.2f}% | "
                f"T = {m['temperature']:g}, alpha = {m['alpha']:g}{mark} |"
            )
        if qa and qk:
            m = qk["method"]
            out.append(
                f"| 2 x {qa['hidden']} MLP, ternary weights (TWN, every layer; at most "
                f"{qk['max_distinct_weights_per_layer']} values a layer) | 2 bits a weight | "
                f"{qa['epochs']} | {qa['test_errors'] / 100:.2f}% | "
                f"{qk['test_errors'] / 100:.2f}% | T = {m['temperature']:g}, alpha = "
                f"{m['alpha']:g} |"
            )
        out.append("")
    e = rows.get("bucila:ensemble")
    if e and rows.get("bucila:alone"):
        out += [
            "## Labelling a transfer set with an ensemble (D1, Bucila et al. 2006)",
            "",
            f"Only {e['labelled']:,} labelled MNIST images. Teacher: an ensemble of "
            f"{e['members']} trained {e['epochs']} epochs on them (test error "
            f"{100 * e['test_error']:.2f}%). Student: a {e['student']} MLP, trained on the "
            "labels alone (for as many steps as the others take), or on the ensemble's "
            "predictions for a transfer set: the labelled images plus MUNGE samples (p = 0.5, "
            "s = 10) or plus jittered copies (random crops) of them."
            + on(*(r for k, r in rows.items() if k.startswith("bucila:"))),
            "",
            "| student trained on | images | epochs | test error |",
            "| --- | --- | --- | --- |",
        ]
        for role, name in (("alone", "the labels"), ("munge", "ensemble labels, MUNGE set"),
                           ("jitter", "ensemble labels, jittered set")):  # fmt: skip
            r = rows.get(f"bucila:{role}")
            if r:
                size = r.get("transfer_set", e["labelled"])
                out.append(f"| {name} | {size:,} | {r['epochs']} | {100 * r['test_error']:.2f}% |")
        out.append("")
    c = rows.get("sgld:chain")
    if c and rows.get("sgld:alone") and rows.get("sgld:kd"):
        a, k, ch = rows["sgld:alone"], rows["sgld:kd"], c["chain"]
        out += [
            "## Bayesian dark knowledge (D6)",
            "",
            f"A 2 x 400 MLP trained 5 epochs is the start of an SGLD chain ({ch['burn_in']} "
            f"steps of burn-in, then {ch['samples']} samples {ch['thin']} steps apart, step "
            f"size {ch['lr']:g}, prior precision {ch['prior_precision']:g}); a 2 x 400 student "
            f"learns the samples' averaged predictive (KD at T = 1, alpha = 1) for "
            f"{k['epochs']} epochs, against the same student on the labels. Test NLL is the "
            "paper's measure." + on(c, a, k),
            "",
            "| model | test error | test NLL (nats) |",
            "| --- | --- | --- |",
            f"| point estimate (chain start) | {100 * c['point_estimate']['test_error']:.2f}% | "
            f"{c['point_estimate']['test_nll']:.4f} |",
            f"| SGLD ensemble ({ch['samples']} samples) | {100 * c['ensemble']['test_error']:.2f}%"
            f" | {c['ensemble']['test_nll']:.4f} |",
            f"| student, labels | {100 * a['test_error']:.2f}% | {a['test_nll']:.4f} |",
            f"| student, SGLD predictive | {100 * k['test_error']:.2f}% | {k['test_nll']:.4f} |",
            "",
        ]
    return out


def to_markdown(report: dict[str, Any]) -> str:
    rows = report.get("rows", {})
    where = sorted({f"{r.get('device', 'cpu')} (torch {r.get('torch', '?')})"
                    for r in rows.values()})  # fmt: skip
    commands = report.get("commands", [report["command"]])
    lines = [
        "# Knowledge distillation",
        "",
        "Commands (merged with `--merge` where several):",
        "",
        *[f"- `{c}`" for c in commands],
        "",
        f"Date: {report['date']}; {report['threads']} threads; rows trained on: "
        f"{', '.join(where) or 'n/a'}.",
        "",
        *[line for exp in runs_of("hinton", rows) for line in hinton_md(rows, exp)],
        *[line for exp in runs_of("fmnist", rows) for line in fmnist_md(rows, exp)],
        *others_md(rows),
        *recovery_md(rows),
        *net2net_md(rows.get("net2net")),
    ]
    return "\n".join(lines)


def runs_of(experiment: str, rows: dict[str, Any]) -> list[str]:
    """The comparisons of ``experiment`` present (itself, and any renamed at merging)."""
    return sorted({k.split(":")[0] for k in rows if k.split(":")[0].split("-")[0] == experiment})


def merge(names: list[str], into: str) -> str:
    """Combine reports; ``NAME@EXP-X`` renames NAME's rows of experiment ``EXP`` to ``EXP-X``
    (a second comparison, with another teacher or schedule)."""
    merged: dict[str, Any] | None = None
    for entry in names:
        name, _, rename = entry.partition("@")
        part = read_report(name)
        if part is None:
            raise SystemExit(f"--merge: benchmarks/results/{name}.json does not exist")
        if rename:  # "fmnist-b" renames the rows of experiment "fmnist"
            base = rename.split("-")[0]
            part["rows"] = {
                (rename + k.removeprefix(base) if k.startswith(f"{base}:") else k): v
                for k, v in part["rows"].items()
            }
        if merged is None:
            merged = copy.deepcopy(part)
            merged["commands"] = list(part.get("commands", [part["command"]]))
        else:
            merged["rows"].update(part.get("rows", {}))
            merged["commands"] += part.get("commands", [part["command"]])
    assert merged is not None
    return write_report(into, merged, to_markdown)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default=ALL_RUNS, help="EXPERIMENT:ROLE, comma-separated")
    parser.add_argument("--report", default="distillation", help="results/NAME.{json,md}")
    parser.add_argument("--update", action="store_true",
                        help="keep the report's rows from earlier runs")  # fmt: skip
    parser.add_argument("--merge", default="", help="combine these reports into --report")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--fit-seconds",
        type=float,
        default=0.0,
        help="teachers: epochs from a timing probe to fit this many seconds",
    )
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--grad-clip", type=float, default=0.0, help="hinton students")
    parser.add_argument("--alpha", type=float, default=0.9)
    parser.add_argument("--teacher-hidden", type=int, default=1200)
    parser.add_argument("--student-hidden", type=int, default=800)
    parser.add_argument("--teacher-epochs", type=int, default=20)
    parser.add_argument("--no-teacher-dropout", dest="teacher_dropout", action="store_false",
                        help="hinton: train the teacher with jitter alone")  # fmt: skip
    parser.add_argument("--student-epochs", type=int, default=20)
    parser.add_argument("--fmnist-teacher", default="resnet56")
    parser.add_argument("--fmnist-teacher-epochs", type=int, default=15)
    parser.add_argument("--fmnist-teacher-earlier-epochs", type=int, default=0,
                        help="teacher+: the epochs the saved teacher has had")  # fmt: skip
    parser.add_argument("--fmnist-epochs", type=int, default=10)
    parser.add_argument("--fmnist-temperature", type=float, default=4.0)
    parser.add_argument("--recovery-ratio", type=float, default=0.32)
    parser.add_argument("--recovery-epochs", type=int, default=3)
    parser.add_argument("--recovery-seeds", type=int, default=3)
    parser.add_argument("--net2net-small-epochs", type=int, default=3)
    parser.add_argument("--net2net-width", type=int, default=256)
    parser.add_argument("--net2net-epochs", type=int, default=6)
    parser.add_argument("--tree-depth", type=int, default=8)
    parser.add_argument("--tree-epochs", type=int, default=10)
    parser.add_argument("--tree-temperature", type=float, default=4.0)
    parser.add_argument("--ternary-epochs", type=int, default=10)
    parser.add_argument("--bucila-labelled", type=int, default=1000)
    parser.add_argument("--bucila-rounds", type=int, default=20)
    parser.add_argument("--bucila-epochs", type=int, default=10)
    parser.add_argument("--sgld-samples", type=int, default=10)
    parser.add_argument("--sgld-lr", type=float, default=1e-6)
    parser.add_argument("--sgld-epochs", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.merge:
        print(merge(args.merge.split(","), args.report))
        return
    report: dict[str, Any] = {**provenance("distillation.py"), "rows": {}}
    if args.update:
        report["rows"] = (read_report(args.report) or {}).get("rows", {})
    data = Data()
    runs = [r.strip() for r in args.runs.split(",") if r.strip()]
    for run in runs:
        experiment, _, role = run.partition(":")
        if experiment not in EXPERIMENTS:
            raise SystemExit(f"--runs: unknown experiment {experiment!r} in {run!r}")
    for run in runs:
        experiment, _, role = run.partition(":")
        row = EXPERIMENTS[experiment](role, args, data)
        row.update(device=args.device, torch=torch.__version__)
        report["rows"][run] = row
        report["seconds"] = elapsed()
        write_report(args.report, report, to_markdown)
        log(f"{run} done")
    print(to_markdown(report))


if __name__ == "__main__":
    main()
