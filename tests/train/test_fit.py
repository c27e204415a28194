"""The training loop: learning, repeatability, callbacks, schedules, resume."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

import squeezer as sq
from squeezer.errors import CheckpointError, ConfigError
from squeezer.train import Callback, EarlyStop, TrainConfig, TrainState, lr_at


@pytest.fixture(scope="module")
def digits():
    return sq.data.load("digits")


def _weights(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def test_fit_learns_digits(digits) -> None:
    train, test = digits
    model = sq.models.create("lenet300")
    before = sq.evaluate(model, test)["top1"]
    result = sq.fit(model, train, val=test, epochs=8, lr=0.1, batch_size=64)
    after = sq.evaluate(model, test)
    assert before < 0.3 and after["top1"] > 0.85
    assert [h["epoch"] for h in result.history] == list(range(1, 9))
    assert result.history[-1]["val_top1"] == pytest.approx(after["top1"])
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


def test_same_seed_same_weights_other_seed_other_weights(digits) -> None:
    train, _ = digits
    runs = []
    for seed in (0, 0, 1):
        torch.manual_seed(123)  # same initial weights for all three
        model = sq.models.create("lenet300")
        sq.fit(model, train.subset(300), epochs=2, batch_size=32, seed=seed)
        runs.append(_weights(model))
    for a, b in zip(runs[0], runs[1], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert any(not torch.equal(a, c) for a, c in zip(runs[0], runs[2], strict=True))


class StopAfter(Callback):
    """Stands for a run killed after some epochs: the same config, cut short."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def on_epoch_end(self, state: TrainState) -> None:
        state.stop = state.epoch + 1 >= self.epochs


def test_resume_continues_from_saved_epoch(digits, tmp_path: Path) -> None:
    train, _ = digits
    data = train.subset(256)
    config = TrainConfig(epochs=3, batch_size=32, lr=0.05, seed=4)

    torch.manual_seed(7)
    straight = sq.models.create("lenet300")
    sq.fit(straight, data, config)

    torch.manual_seed(7)
    interrupted = sq.models.create("lenet300")
    ckpt = tmp_path / "run.pt"
    first = sq.fit(interrupted, data, config, checkpoint=ckpt, callbacks=[StopAfter(1)])
    assert first.start_epoch == 0 and len(first.history) == 1

    torch.manual_seed(999)  # a fresh process would start from other weights
    resumed = sq.models.create("lenet300")
    result = sq.fit(resumed, data, config, checkpoint=ckpt, resume=True)
    assert result.start_epoch == 1
    assert [h["epoch"] for h in result.history] == [1, 2, 3]
    for a, b in zip(_weights(straight), _weights(resumed), strict=True):
        torch.testing.assert_close(a, b)
    saved = sq.train.read_checkpoint(ckpt)["train_state"]
    assert saved["epoch"] == 3 and len(saved["history"]) == 3


def test_resume_needs_a_checkpoint(digits, tmp_path: Path) -> None:
    model = sq.models.create("lenet300")
    with pytest.raises(ConfigError, match="resume=True needs checkpoint"):
        sq.fit(model, digits[0], epochs=1, resume=True)
    bare = tmp_path / "bare.pt"
    sq.save_checkpoint(model, bare)
    with pytest.raises(CheckpointError, match="no training state"):
        sq.fit(model, digits[0], epochs=1, checkpoint=bare, resume=True)


class Recorder(Callback):
    def __init__(self) -> None:
        self.events: list[str] = []

    def on_fit_start(self, state: TrainState) -> None:
        self.events.append("fit_start")

    def on_epoch_start(self, state: TrainState) -> None:
        self.events.append(f"epoch_start{state.epoch}")

    def on_batch_start(self, state: TrainState) -> None:
        assert state.inputs is not None and state.targets is not None
        self.events.append("batch_start")

    def loss(self, state: TrainState, loss: torch.Tensor) -> torch.Tensor:
        assert state.outputs is not None
        self.events.append("loss")
        return loss

    def on_after_backward(self, state: TrainState) -> None:
        assert all(p.grad is not None for p in state.model.parameters())
        self.events.append("after_backward")

    def on_batch_end(self, state: TrainState) -> None:
        self.events.append("batch_end")

    def on_epoch_end(self, state: TrainState) -> None:
        assert "train_loss" in state.metrics
        self.events.append(f"epoch_end{state.epoch}")

    def on_fit_end(self, state: TrainState) -> None:
        self.events.append("fit_end")


def test_callback_hooks_run_in_order(digits) -> None:
    rec = Recorder()
    sq.fit(
        sq.models.create("lenet300"), digits[0].subset(20), epochs=2, batch_size=10, callbacks=[rec]
    )
    batch = ["batch_start", "loss", "after_backward", "batch_end"]
    assert rec.events == [
        "fit_start",
        "epoch_start0",
        *batch,
        *batch,
        "epoch_end0",
        "epoch_start1",
        *batch,
        *batch,
        "epoch_end1",
        "fit_end",
    ]


class MaskFirstRow(Callback):
    """What pruning will do: keep some weights at exactly zero through optimizer steps."""

    def on_batch_end(self, state: TrainState) -> None:
        with torch.no_grad():
            state.model.fc1.weight[0].zero_()


def test_callback_keeps_constraint_and_can_change_loss(digits) -> None:
    model = sq.models.create("lenet300")

    class HugeL2(Callback):
        def loss(self, state: TrainState, loss: torch.Tensor) -> torch.Tensor:
            return loss + 10.0 * sum((p**2).sum() for p in state.model.parameters())

    norm_before = float(model.fc1.weight.detach().norm())
    sq.fit(
        model,
        digits[0].subset(128),
        epochs=2,
        batch_size=32,
        lr=0.01,
        weight_decay=0,
        callbacks=[MaskFirstRow(), HugeL2()],
    )
    assert torch.count_nonzero(model.fc1.weight[0]) == 0
    assert float(model.fc1.weight.detach().norm()) < 0.5 * norm_before


def test_early_stop(digits) -> None:
    result = sq.fit(
        sq.models.create("lenet300"),
        digits[0].subset(64),
        epochs=5,
        batch_size=32,
        callbacks=[EarlyStop("train_loss", 100.0, mode="min")],
    )
    assert len(result.history) == 1


def test_evaluate_topk_on_a_known_model() -> None:
    # logits are fixed: for each example the true class ranks as given
    logits = torch.tensor([[9.0, 1, 0, 0, 0, 0], [9.0, 8, 0, 0, 0, 0], [0.0, 1, 2, 3, 4, 5]])
    targets = torch.tensor([0, 1, 0])  # ranks 1, 2, 6

    class Fixed(nn.Module):
        def forward(self, idx: torch.Tensor) -> torch.Tensor:
            return logits[idx.long()]

    result = sq.evaluate(Fixed(), [(torch.arange(3), targets)], topk=(1, 2, 5))
    assert result["top1"] == pytest.approx(1 / 3)
    assert result["top2"] == pytest.approx(2 / 3)
    assert result["top5"] == pytest.approx(2 / 3)
    expected = float(nn.functional.cross_entropy(logits, targets))
    assert result["loss"] == pytest.approx(expected) and result["n"] == 3


def test_evaluate_restores_mode_and_skips_large_k() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3)).train()
    result = sq.evaluate(model, [(torch.randn(5, 4), torch.zeros(5, dtype=torch.long))])
    assert model.training and "top5" not in result and "top1" in result


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_optimizers(optimizer: str, digits) -> None:
    model = sq.models.create("lenet300")
    result = sq.fit(
        model,
        digits[0].subset(256),
        epochs=3,
        batch_size=32,
        optimizer=optimizer,
        lr=0.001 if optimizer != "sgd" else 0.05,
    )
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


def test_divergence_is_reported(digits) -> None:
    with pytest.raises(FloatingPointError, match="diverged"):
        sq.fit(
            sq.models.create("lenet300"),
            digits[0].subset(256),
            epochs=2,
            lr=1e6,
            momentum=0.0,
            schedule="constant",
        )


def test_learning_rate_schedules() -> None:
    cos = TrainConfig(epochs=10, lr=0.1, schedule="cosine")
    assert lr_at(cos, 0) == pytest.approx(0.1)
    assert lr_at(cos, 5) == pytest.approx(0.05)
    assert lr_at(cos, 10) == pytest.approx(0.0, abs=1e-12)
    warm = TrainConfig(epochs=10, lr=0.1, schedule="constant", warmup_epochs=2)
    assert lr_at(warm, 1) == pytest.approx(0.05) and lr_at(warm, 3) == pytest.approx(0.1)
    step = TrainConfig(epochs=8, lr=1.0, schedule="step", gamma=0.1)
    assert [lr_at(step, e) for e in (0, 3.9, 4, 6)] == pytest.approx([1, 1, 0.1, 0.01])
    custom = TrainConfig(epochs=8, lr=1.0, schedule="step", milestones=(2,), gamma=0.5)
    assert lr_at(custom, 7) == pytest.approx(0.5)
    lin = TrainConfig(epochs=4, lr=0.4, schedule="linear")
    assert lr_at(lin, 1) == pytest.approx(0.3)
    assert math.isclose(lr_at(cos, 2.5), 0.05 * (1 + math.cos(math.pi * 0.25)))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("epochs", -1, "epochs must be"),
        ("optimizer", "lbfgs", "optimizer must be one of"),
        ("lr", 0.0, "lr must be"),
        ("schedule", "exp", "schedule must be one of"),
        ("momentum", 1.0, "momentum"),
    ],
)
def test_invalid_config(field: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**{field: value})


def test_fit_rejects_unknown_override(digits) -> None:
    with pytest.raises(ConfigError, match="unknown key.*'epoch'"):
        sq.fit(sq.models.create("lenet300"), digits[0], epoch=3)


def test_recalibrate_bn_matches_the_data_statistics() -> None:
    from squeezer.train import recalibrate_bn_

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU())
    x = torch.randn(16, 1, 6, 6) * 3 + 1
    model.eval()
    recalibrate_bn_(model, [(x, torch.zeros(16))])
    bn = model[1]
    with torch.no_grad():
        features = model[0](x)
    torch.testing.assert_close(bn.running_mean, features.mean((0, 2, 3)))
    torch.testing.assert_close(bn.running_var, features.var((0, 2, 3), unbiased=True))
    assert not model.training and bn.momentum == 0.1


def _flushed() -> bool:
    return bool(torch.tensor([1e-39]).mul(1.0).item() == 0)


def test_fit_flushes_denormals_while_training_and_restores_the_setting() -> None:
    from squeezer.train.loop import flushing_denormals

    seen = []

    class Probe(Callback):
        def on_epoch_start(self, state: TrainState) -> None:
            seen.append(_flushed())

    x, y = torch.randn(8, 4), torch.randint(0, 2, (8,))
    assert not _flushed()
    sq.fit(nn.Linear(4, 2), [(x, y)], epochs=1, callbacks=[Probe()])
    assert seen == [True] and not _flushed()
    torch.set_flush_denormal(True)  # a caller who flushes already keeps flushing
    try:
        with flushing_denormals():
            pass
        assert _flushed()
    finally:
        torch.set_flush_denormal(False)


def test_fit_on_a_named_device_and_run_recipe_brings_the_model_home() -> None:
    from squeezer.pipeline import Recipe
    from squeezer.pipeline.run import run_stage

    torch.manual_seed(0)
    x, y = torch.randn(16, 1, 4, 4), torch.randint(0, 3, (16,))
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))
    before = [p.detach().clone() for p in model.parameters()]
    recipe = Recipe.from_dict({"name": "t", "stages": [{"fine-tune": {"epochs": 1, "lr": 0.1}}]})
    run_stage(model, recipe.stages[0], recipe, [(x, y)], (x[:1],), device="cpu")
    after = list(model.parameters())
    assert all(p.device.type == "cpu" for p in after)
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    with pytest.raises((RuntimeError, AssertionError)):  # a device it lacks fails loudly
        run_stage(model, recipe.stages[0], recipe, [(x, y)], (x[:1],), device="cuda:99")
    assert model(x).shape == (16, 3)  # and the model is still whole, on the CPU
