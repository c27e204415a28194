"""Checkpoints: round trip, rebuilding from the zoo, and refusing forged or damaged files."""

from __future__ import annotations

import copy
import os
import pickle
from pathlib import Path

import pytest
import torch

import squeezer as sq
from squeezer.errors import CheckpointError


def test_round_trip_rebuilds_the_zoo_model(tmp_path: Path) -> None:
    model = sq.models.create("lenet5", num_classes=7, in_channels=3, input_size=32)
    path = sq.save_checkpoint(model, tmp_path / "m.pt", meta={"dataset": "cifar10"})
    ckpt = sq.train.read_checkpoint(path)
    assert ckpt["arch"] == {
        "name": "lenet5",
        "kwargs": {"num_classes": 7, "in_channels": 3, "input_size": 32},
        "surgery": [],
        "input_shape": [3, 32, 32],
    }
    assert ckpt["input_shape"] == [3, 32, 32] and ckpt["meta"] == {"dataset": "cifar10"}
    loaded = sq.load_checkpoint(path)
    assert type(loaded) is type(model)
    for (k1, v1), (k2, v2) in zip(
        model.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        assert k1 == k2
        torch.testing.assert_close(v1, v2, rtol=0, atol=0)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(model.eval()(x), loaded(x), rtol=0, atol=0)


def test_plain_state_dict_needs_a_model(tmp_path: Path) -> None:
    model = sq.models.create("lenet300")
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    with pytest.raises(CheckpointError, match="records no architecture"):
        sq.load_checkpoint(tmp_path / "sd.pt")
    loaded = sq.load_checkpoint(tmp_path / "sd.pt", model=sq.models.create("lenet300"))
    torch.testing.assert_close(loaded.fc1.weight, model.fc1.weight)


class _Evil:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("echo pwned > /dev/null",))


def test_forged_checkpoint_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"format": "squeezer.checkpoint", "payload": _Evil()}, path)
    with pytest.raises(CheckpointError, match="refused: the file asks to unpickle code"):
        sq.load_checkpoint(path)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_raw_pickle_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(CheckpointError, match="evil.pkl"):
        sq.load_checkpoint(path)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint", bytes(range(256)) * 4])
def test_garbage_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="bad.pt"):
        sq.load_checkpoint(path)


def test_truncated_checkpoint(tmp_path: Path) -> None:
    path = sq.save_checkpoint(sq.models.create("lenet300"), tmp_path / "t.pt")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="t.pt"):
        sq.load_checkpoint(path)


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such file"):
        sq.load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="is a folder"):
        sq.load_checkpoint(tmp_path)


def test_weights_that_do_not_fit(tmp_path: Path) -> None:
    path = sq.save_checkpoint(sq.models.create("lenet300"), tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match="weights do not fit"):
        sq.load_checkpoint(path, model=sq.models.create("lenet300", num_classes=5))


def test_unknown_architecture(tmp_path: Path) -> None:
    model = sq.models.create("lenet300")
    model.squeezer_arch = {"name": "not-a-model", "kwargs": {}}
    path = sq.save_checkpoint(model, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match="cannot rebuild the model: unknown model"):
        sq.load_checkpoint(path)


def test_a_pruned_model_checkpoint_loads_into_a_fresh_model(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = sq.models.create("lenet300")
    sq.prune_(model, sq.pruning.Magnitude(sparsity=0.9))
    path = sq.save_checkpoint(model, tmp_path / "pruned.pt")
    ckpt = sq.train.read_checkpoint(path)
    assert "fc1.weight" in ckpt["state_dict"]  # plain keys, no parametrizations.*
    loaded = sq.load_checkpoint(path)  # a fresh, unmasked lenet300
    fresh = sq.models.create("lenet300")
    sq.load_checkpoint(path, model=fresh)
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(loaded(x), model.eval()(x))
        assert torch.equal(fresh(x), model(x))
    assert float((loaded.fc1.weight == 0).float().mean()) > 0.899


def test_training_a_pruned_model_resumes_with_its_masks(tmp_path: Path) -> None:
    x, y = torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,))
    data = [(x, y)]
    model = sq.models.create("lenet300")
    sq.prune_(model, sq.pruning.Magnitude(sparsity=0.9))
    ckpt = tmp_path / "run.pt"
    sq.fit(model, data, epochs=1, lr=0.01, checkpoint=ckpt)
    resumed = copy.deepcopy(model)
    sq.fit(resumed, data, epochs=2, lr=0.01, checkpoint=ckpt, resume=True)
    assert float((resumed.fc1.weight == 0).float().mean()) > 0.899
