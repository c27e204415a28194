"""The one training and evaluation loop that every compression method fine-tunes with."""

from __future__ import annotations

import contextlib
import functools
import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from squeezer.data.dataset import BatchLoader, ImageDataset
from squeezer.errors import CheckpointError, ConfigError
from squeezer.train import distributed
from squeezer.train.callbacks import Callback, TrainState
from squeezer.train.checkpoint import read_checkpoint, save_checkpoint
from squeezer.train.config import TrainConfig, lr_at, make_optimizer
from squeezer.train.penalty import auxiliary_loss, model_penalty

Batches = Iterable[tuple[Tensor, Tensor]]


@dataclass
class FitResult:
    """What :func:`fit` returns: one dict of metrics per finished epoch."""

    history: list[dict[str, float]] = field(default_factory=list)
    start_epoch: int = 0  # > 0 when the run resumed from a checkpoint
    seconds: float = 0.0

    @property
    def final(self) -> dict[str, float]:
        return self.history[-1] if self.history else {}


def _batches(
    data: ImageDataset | Batches | torch.utils.data.Dataset,
    batch_size: int,
    shuffle: bool,
    seed: int,
) -> Batches:
    if isinstance(data, ImageDataset):
        return BatchLoader(data, batch_size, shuffle=shuffle, seed=seed)
    if (
        isinstance(data, torch.utils.data.Dataset)
        and hasattr(data, "__getitem__")
        and not isinstance(data, torch.utils.data.IterableDataset)
    ):
        gen = torch.Generator().manual_seed(seed)
        return torch.utils.data.DataLoader(
            data, batch_size=batch_size, shuffle=shuffle, generator=gen
        )
    return data  # already an iterable of batches (a DataLoader, a BatchLoader, a list)


def _quiet(progress: bool | None) -> bool:
    return not sys.stderr.isatty() if progress is None else not progress


def _num_batches(batches: Batches) -> int:
    try:
        return len(batches)  # type: ignore[arg-type]
    except TypeError:
        return 0


@contextlib.contextmanager
def flushing_denormals() -> Iterator[None]:
    """Denormal floats read and written as zero on the CPU while inside, as before after.

    Sparse training leaves many weights and gradients a hair above zero; as denormals they
    take the CPU's slow path (a fine-tune was seen to run 30x slower). Their values are far
    below anything a network's output can feel."""
    before = bool(torch.tensor([1e-39]).mul(1.0).item() == 0)  # flushed already?
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if not before:
            torch.set_flush_denormal(False)


def _denormals_flushed(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with flushing_denormals():
            return fn(*args, **kwargs)

    return wrapper


@_denormals_flushed
def fit(
    model: nn.Module,
    train: ImageDataset | Batches,
    config: TrainConfig | None = None,
    *,
    val: ImageDataset | Batches | None = None,
    callbacks: Sequence[Callback] = (),
    checkpoint: str | Path | None = None,
    resume: bool = False,
    progress: bool | None = None,
    verbose: bool = False,
    device: str | torch.device | None = None,
    **overrides: Any,
) -> FitResult:
    """Train ``model`` in place with cross-entropy (denormal floats flushed to zero on the
    CPU meanwhile: see :func:`flushing_denormals`).

    Args:
        model: the network.
        train: an :class:`ImageDataset` (batched, shuffled and augmented here with
            ``config.batch_size`` and ``config.seed``), any map-style ``Dataset``, or an
            iterable of ``(inputs, targets)`` batches.
        config: hyper-parameters; ``None`` means ``TrainConfig()``.
        val: evaluated after every epoch (``val_top1``, ``val_loss`` in the history).
        callbacks: hooks that compression methods plug in (see :class:`Callback`).
        checkpoint: a file written at the end of every epoch, holding what resuming needs.
        resume: continue from ``checkpoint`` at the epoch after the one it saved (the
            schedule, data order and random state continue as if never stopped).
        progress: a progress bar per epoch (default: when standard error is a terminal).
        verbose: print one line of metrics per epoch to standard error.
        device: where to train (default: where the model's parameters are).
        **overrides: fields of ``config`` to change, e.g. ``epochs=5``.

    Returns:
        A :class:`FitResult` with the per-epoch history.

    Raises:
        ConfigError: an invalid override.
        CheckpointError: ``resume`` with a missing or incompatible checkpoint.
    """
    config = config or TrainConfig()
    if overrides:
        try:
            config = config.replace(**overrides)
        except ConfigError as exc:
            raise ConfigError(f"fit: {exc}") from None
    if resume and checkpoint is None:
        raise ConfigError("fit: resume=True needs checkpoint=PATH")
    dev = torch.device(device) if device is not None else _device_of(model)
    ctx = distributed.setup(dev)  # under torchrun: this process's rank in the job
    dev = distributed.device_for(ctx, dev)
    model.to(dev)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(config, params)
    state = TrainState(model=model, optimizer=optimizer, config=config)
    start_epoch = 0
    if resume and checkpoint is not None and Path(checkpoint).exists():
        start_epoch = _restore(checkpoint, model, optimizer, state, config)
    runner = distributed.wrap(model, ctx, dev, config.sync_bn)
    if not ctx.main:
        verbose, progress = False, False
    batches = _batches(train, config.batch_size, shuffle=True, seed=config.seed)
    state.batches_per_epoch = _num_batches(batches)
    state.num_examples = _num_examples(train, batches, config.batch_size)
    started = time.perf_counter()
    for cb in callbacks:
        cb.on_fit_start(state)
    for epoch in range(start_epoch, config.epochs):
        if state.stop:
            break
        state.epoch = epoch
        torch.manual_seed(config.seed * 1_000_003 + epoch + 1)  # dropout etc., resumable
        if isinstance(batches, BatchLoader):
            batches.set_epoch(epoch)
        elif hasattr(batches, "sampler") and hasattr(batches.sampler, "set_epoch"):
            batches.sampler.set_epoch(epoch)
        for cb in callbacks:
            cb.on_epoch_start(state)
        t0 = time.perf_counter()
        train_metrics = _train_epoch(state, batches, callbacks, dev, progress, runner, ctx)
        metrics: dict[str, float] = {"epoch": epoch + 1, **train_metrics}
        if val is not None:
            v = evaluate(model, val, device=dev, topk=(1,))
            metrics.update(val_top1=v["top1"], val_loss=v["loss"])
        metrics["seconds"] = time.perf_counter() - t0
        state.metrics = metrics
        state.history.append(metrics)
        for cb in callbacks:
            cb.on_epoch_end(state)
        if verbose:
            print(_format_epoch(metrics, config.epochs), file=sys.stderr, flush=True)
        if checkpoint is not None and ctx.main:  # one writer; every rank can resume from it
            save_checkpoint(
                model,
                checkpoint,
                train_state={
                    "epoch": epoch + 1,
                    "step": state.step,
                    "optimizer": optimizer.state_dict(),
                    "config": config.to_dict(),
                    "history": state.history,
                },
            )
        distributed.barrier(ctx)
    for cb in callbacks:
        cb.on_fit_end(state)
    return FitResult(
        history=list(state.history), start_epoch=start_epoch, seconds=time.perf_counter() - started
    )


def _num_examples(train: Any, batches: Batches, batch_size: int) -> int:
    """How many examples an epoch holds (what a per-example penalty is divided by)."""
    source = getattr(train, "dataset", train)  # a DataLoader or a BatchLoader
    if isinstance(source, (ImageDataset, torch.utils.data.Dataset)):
        try:
            return max(len(source), 1)
        except TypeError:
            pass
    if isinstance(train, (list, tuple)) and train:
        return sum(int(b[0].shape[0]) for b in train)
    return max(_num_batches(batches) * batch_size, 1)


def _device_of(model: nn.Module) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def _restore(
    path: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    state: TrainState,
    config: TrainConfig,
) -> int:
    ckpt = read_checkpoint(path)
    saved = ckpt.get("train_state")
    if not isinstance(saved, dict) or "epoch" not in saved:
        raise CheckpointError(f"{path}: holds no training state to resume from")
    try:
        model.load_state_dict(saved.get("model_state") or ckpt["state_dict"])
        optimizer.load_state_dict(saved["optimizer"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{path}: does not fit this model/optimizer: {exc}") from None
    state.step = int(saved.get("step", 0))
    state.history = list(saved.get("history") or [])
    state.metrics = state.history[-1] if state.history else {}
    return int(saved["epoch"])


def _train_epoch(
    state: TrainState,
    batches: Batches,
    callbacks: Sequence[Callback],
    dev: torch.device,
    progress: bool | None,
    runner: nn.Module | None = None,
    ctx: distributed.Context | None = None,
) -> dict[str, float]:
    model, optimizer, config = state.model, state.optimizer, state.config
    runner = runner if runner is not None else model  # the DDP wrapper under torchrun
    ctx = ctx if ctx is not None else distributed.Context()
    model.train()
    n_batches = state.batches_per_epoch
    total_loss, total_penalty, correct, seen = 0.0, 0.0, 0, 0
    bar = tqdm(
        batches,
        total=n_batches or None,
        desc=f"epoch {state.epoch + 1}/{config.epochs}",
        disable=_quiet(progress),
        leave=False,
        unit="batch",
    )
    for i, (x, y) in enumerate(bar):
        x, y, weight = distributed.shard(x, y, ctx)  # this rank's slice of the global batch
        x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
        state.batch_index, state.inputs, state.targets = i, x, y
        state.lr = lr_at(config, state.epoch + i / max(n_batches, 1))
        for group in optimizer.param_groups:
            group["lr"] = state.lr * group.get("lr_scale", 1.0)
        for cb in callbacks:
            cb.on_batch_start(state)
        out = runner(state.inputs)
        state.outputs = out
        if x.shape[0]:
            loss = F.cross_entropy(out, state.targets, label_smoothing=config.label_smoothing)
            for cb in callbacks:
                loss = cb.loss(state, loss)
        else:  # a global batch smaller than the job: this rank has nothing, weight 0
            loss = out.sum() * 0.0
        unweighted = loss.detach()
        if weight != 1.0:
            loss = loss * weight
        aux = auxiliary_loss(model)
        if aux is not None:  # per-batch terms layers leave (mixture-of-experts balancing)
            loss = loss + aux
        penalty = model_penalty(model)
        if penalty is not None:  # trained parametrizations: their term per training example
            loss = loss + penalty / state.num_examples
            total_penalty += float(penalty.detach()) * y.shape[0]
        state.loss = loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for cb in callbacks:
            cb.on_after_backward(state)
        if config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        state.step += 1
        for cb in callbacks:
            cb.on_batch_end(state)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FloatingPointError(
                f"training diverged at epoch {state.epoch + 1}, batch {i + 1}: loss is {value}; "
                f"lower the learning rate (now {state.lr:.3g})"
            )
        # the metric: this slice's own loss (its weight only serves DDP's gradient average)
        total_loss += (value + float(unweighted) * (1.0 - weight)) * y.shape[0]
        if out.ndim == 2:
            correct += int((out.detach().argmax(1) == state.targets).sum())
        seen += int(y.shape[0])
        if not bar.disable and i % 10 == 0:
            bar.set_postfix(loss=f"{total_loss / seen:.4f}", lr=f"{state.lr:.3g}")
    bar.close()
    if ctx.active:  # every rank reports the whole job's figures
        total_loss, total_penalty, correct, seen = distributed.all_sum(
            [total_loss, total_penalty, float(correct), float(seen)], ctx, dev
        )
    metrics = {
        "train_loss": total_loss / max(seen, 1),
        "train_top1": correct / max(seen, 1),
        "lr": state.lr,
    }
    if total_penalty:
        metrics["penalty"] = total_penalty / max(seen, 1)
    return metrics


def _format_epoch(m: dict[str, float], epochs: int) -> str:
    parts = [
        f"epoch {int(m['epoch'])}/{epochs}",
        f"loss {m['train_loss']:.4f}",
        f"train top1 {m['train_top1']:.4f}",
    ]
    if "penalty" in m:
        parts.append(f"penalty {m['penalty']:.4g}")
    if "val_top1" in m:
        parts += [f"val top1 {m['val_top1']:.4f}", f"val loss {m['val_loss']:.4f}"]
    parts.append(f"{m['seconds']:.1f}s")
    return "  ".join(parts)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: ImageDataset | Batches,
    *,
    batch_size: int = 1000,
    topk: Sequence[int] = (1, 5),
    device: str | torch.device | None = None,
    progress: bool | None = None,
) -> dict[str, float]:
    """Top-k accuracy (fractions) and mean cross-entropy of ``model`` on ``data``.

    Args:
        model: the network; its train/eval mode is restored afterwards.
        data: an :class:`ImageDataset` (never augmented here), a ``Dataset``, or batches.
        batch_size: images per forward pass when batching here.
        topk: which top-k accuracies to report (k larger than the class count is skipped).
        device: where to run (default: where the model is); the model is moved there, as
            :func:`fit` moves it.
        progress: a progress bar (default: when standard error is a terminal).

    Returns:
        ``{"top1": ..., "top5": ..., "loss": ..., "n": ...}``.
    """
    if isinstance(data, ImageDataset):
        data = data.without_augment()
    dev = torch.device(device) if device is not None else _device_of(model)
    model.to(dev)
    was_training = model.training
    model.eval()
    batches = _batches(data, batch_size, shuffle=False, seed=0)
    total_loss, seen = 0.0, 0
    hits = dict.fromkeys(topk, 0)
    try:
        for x, y in tqdm(
            batches,
            total=_num_batches(batches) or None,
            desc="evaluate",
            disable=_quiet(progress),
            leave=False,
            unit="batch",
        ):
            x, y = x.to(dev), y.to(dev)
            out = model(x)
            total_loss += float(F.cross_entropy(out, y, reduction="sum"))
            kmax = min(max(topk), out.shape[1])
            top = out.topk(kmax, dim=1).indices
            match = top == y[:, None]
            for k in topk:
                if k <= out.shape[1]:
                    hits[k] += int(match[:, :k].any(dim=1).sum())
            seen += int(y.shape[0])
    finally:
        model.train(was_training)
    if seen == 0:
        raise ConfigError("evaluate: the data holds no examples")
    n_classes = out.shape[1]
    result = {f"top{k}": hits[k] / seen for k in topk if k <= n_classes}
    result.update(loss=total_loss / seen, n=seen)
    return result
