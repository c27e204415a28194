"""Training a student against a teacher: the callback that plugs the terms into ``sq.fit``,
and :func:`distill`, which checks everything on one probe batch before training starts."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from squeezer.config import Config
from squeezer.distillation.features import FeatureTap
from squeezer.distillation.terms import FitNets, HintTerm, Term, term_for
from squeezer.errors import ConfigError
from squeezer.train import Callback, FitResult, TrainConfig, TrainState, fit


class Teachers(nn.Module):
    """Several teachers as one: their logits averaged (an ensemble labels the data, as in
    Bucila et al.'s model compression)."""

    def __init__(self, models: Sequence[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(models)

    def forward(self, x: Tensor) -> Tensor:
        return torch.stack([m(x) for m in self.members]).mean(0)


def load_teacher(teacher: nn.Module | str | Path | Sequence[Any]) -> nn.Module:
    """A teacher from a model, a checkpoint (``.pt``), a ``.sqz`` file, or a list of these
    (an ensemble, :class:`Teachers`)."""
    if isinstance(teacher, nn.Module):
        return teacher
    if isinstance(teacher, (str, Path)):
        path = Path(teacher)
        if path.suffix == ".sqz":
            from squeezer.coding import load

            return load(path)
        from squeezer.train import load_checkpoint

        return load_checkpoint(path)
    if isinstance(teacher, Sequence) and len(teacher) > 0:
        return Teachers([load_teacher(t) for t in teacher])
    raise ConfigError(f"teacher: expected a model, a file or a list of them, got {teacher!r}")


def _first_batch(train: Any, example_inputs: Tensor | None) -> Tensor:
    if example_inputs is not None:
        return example_inputs
    from squeezer.data import ImageDataset, loader

    if isinstance(train, ImageDataset):
        return next(iter(loader(train.without_augment(), 8, shuffle=False)))[0]
    first = next(iter(train))
    return first[0] if isinstance(first, (tuple, list)) else first


class Distiller(Callback):
    """Adds the terms' loss to every training step of the student: runs the teacher on the
    same batch (no gradient, evaluation mode) and reads both networks' tapped tensors.

    Call :meth:`probe` on one batch before training (``distill`` does): it checks the class
    counts and the tensors' shapes and builds the terms' regressors, so that bad input fails
    before the first epoch. :meth:`close` removes the hooks.
    """

    def __init__(self, student: nn.Module, teacher: nn.Module, terms: Sequence[Term]) -> None:
        self.student, self.teacher, self.terms = student, teacher, list(terms)
        self.s_tap = FeatureTap(student, [p for t in self.terms for p in t.student_paths],
                                "student")  # fmt: skip
        try:
            self.t_tap = FeatureTap(teacher, [p for t in self.terms for p in t.teacher_paths],
                                    "teacher")  # fmt: skip
        except ConfigError:
            self.s_tap.close()
            raise
        self.t_out: Tensor | None = None

    def probe(self, x: Tensor) -> None:
        was = self.student.training
        self.student.eval()
        dev = next((p.device for p in self.student.parameters()), torch.device("cpu"))
        try:
            with torch.no_grad():
                s_out = self.student(x.to(dev))
                t_out = self._teach(x.to(dev))
        finally:
            self.student.train(was)
        if s_out.dim() != 2 or t_out.dim() != 2:
            raise ConfigError(
                f"distill: the student gives {tuple(s_out.shape)} and the teacher "
                f"{tuple(t_out.shape)}; both must give (batch, classes) logits"
            )
        if s_out.shape[1] != t_out.shape[1]:
            raise ConfigError(
                f"distill: the teacher has {t_out.shape[1]} classes and the student "
                f"{s_out.shape[1]}; they must predict the same classes"
            )
        s = {p: self.s_tap[p] for t in self.terms for p in t.student_paths}
        t = {p: self.t_tap[p] for term in self.terms for p in term.teacher_paths}
        for term in self.terms:
            term.setup(s, t)
            term.to(dev)

    def parameters(self) -> list[nn.Parameter]:
        """The terms' own trainable parameters (FitNets' regressors)."""
        return [p for t in self.terms for p in t.parameters() if p.requires_grad]

    def _teach(self, x: Tensor) -> Tensor:
        self.teacher.eval()
        with torch.no_grad():
            return self.teacher(x)

    def on_fit_start(self, state: TrainState) -> None:
        dev = state.inputs.device if state.inputs is not None else None
        dev = dev or next((p.device for p in state.model.parameters()), torch.device("cpu"))
        self.teacher.to(dev)
        for term in self.terms:
            term.to(dev)
        extra = self.parameters()
        if extra:
            state.optimizer.add_param_group({"params": extra, "lr_scale": 1.0})

    def on_batch_start(self, state: TrainState) -> None:
        self.t_out = self._teach(state.inputs)

    def loss(self, state: TrainState, loss: Tensor) -> Tensor:
        assert self.t_out is not None and state.outputs is not None
        s = {p: self.s_tap[p] for t in self.terms for p in t.student_paths}
        t = {p: self.t_tap[p] for term in self.terms for p in term.teacher_paths}
        total, ce_scale = loss.new_zeros(()), 1.0
        for term in self.terms:
            part, scale = term(state.outputs, self.t_out, s, t)
            total = total + part
            ce_scale *= scale
        return total + ce_scale * loss if ce_scale else total

    def close(self) -> None:
        self.s_tap.close()
        self.t_tap.close()


def distill(
    student: nn.Module,
    teacher: nn.Module | str | Path | Sequence[Any],
    train: Any,
    method: Config | Sequence[Config],
    config: TrainConfig | None = None,
    *,
    val: Any = None,
    example_inputs: Tensor | None = None,
    callbacks: Sequence[Callback] = (),
    verbose: bool = False,
    device: str | torch.device | None = None,
    **overrides: Any,
) -> FitResult:
    """Train ``student`` in place on ``train`` with ``teacher``'s knowledge.

    Args:
        student: the model to train (a zoo model, a compressed model, the user's own).
        teacher: a model, a checkpoint or ``.sqz`` path, or a list of them (an ensemble whose
            logits are averaged); it is never trained.
        train: training data, as for :func:`squeezer.fit` (unlabelled data works with
            :class:`Logits` and ``KD(alpha=1)``: the labels are then never read).
        method: one config (:class:`KD`, :class:`Logits`, :class:`FitNets`,
            :class:`AttentionTransfer`, :class:`NST`) or several, whose losses add up.
        config, overrides: the training run (as for ``fit``).
        val: evaluated after every epoch.
        example_inputs: the probe batch (default: the first training images).
        device: where to train.

    Returns:
        The ``fit`` result of the (last) stage; FitNets' hint stage comes first when
        ``hint_epochs > 0``.

    Raises:
        ConfigError: a teacher with other classes, a module path that does not exist, feature
            shapes that cannot be compared; all before any training.
    """
    teacher = load_teacher(teacher)
    methods = [method] if isinstance(method, Config) else list(method)
    if not methods:
        raise ConfigError("distill: give at least one method")
    x = _first_batch(train, example_inputs)
    terms = [term_for(m) for m in methods]
    hints = [HintTerm(m) for m in methods if isinstance(m, FitNets) and m.hint_epochs > 0]
    stages: list[tuple[list[Term], int | None]] = []
    if hints:
        stages.append((list(hints), max(m.hint_epochs for m in methods if isinstance(m, FitNets))))
    stages.append((terms, None))
    distillers = []
    try:
        for stage_terms, _ in stages:  # every check before any training
            d = Distiller(student, teacher, stage_terms)
            distillers.append(d)
            d.probe(x)
        result = None
        for d, (_, epochs) in zip(distillers, stages, strict=True):
            extra = {"epochs": epochs} if epochs is not None else {}
            result = fit(
                student, train, config, val=val, callbacks=[d, *callbacks], verbose=verbose,
                device=device, **{**overrides, **extra},
            )  # fmt: skip
        assert result is not None
        return result
    finally:
        for d in distillers:
            d.close()
