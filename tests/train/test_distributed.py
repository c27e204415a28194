"""``sq.fit`` under ``torchrun``: two processes (gloo) end with the weights of one process
trained on the same global batches, write one checkpoint, and resume from it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = r"""
import json, sys
import torch
from torch import nn
import squeezer as sq

out, epochs, ckpt, resume = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"
schedule = sys.argv[5]
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 3))
g = torch.Generator().manual_seed(1)
x = torch.randn(233, 12, generator=g)
y = (x[:, :3] + 0.3 * x[:, 3:6]).argmax(1)
# global batches of 64 and a last one of 41: split 21 / 20 between two processes
batches = [(x[i : i + 64], y[i : i + 64]) for i in range(0, 233, 64)]
result = sq.fit(model, batches, epochs=epochs, lr=0.1, momentum=0.9, weight_decay=1e-3,
                schedule=schedule, checkpoint=ckpt if ckpt != "-" else None, resume=resume)
import torch.distributed as dist
rank = dist.get_rank() if dist.is_initialized() else 0
world = dist.get_world_size() if dist.is_initialized() else 1
torch.save(model.state_dict(), f"{out}.rank{rank}.pt")
if rank == 0:
    json.dump({"world": world, "history": result.history}, open(f"{out}.json", "w"))
if dist.is_initialized():  # leave the job cleanly (a rank exiting mid-teardown can abort)
    dist.barrier()
    dist.destroy_process_group()
"""


def _run(tmp: Path, name: str, procs: int, epochs: int, ckpt: str = "-", resume: bool = False,
         schedule: str = "cosine"):  # fmt: skip
    script = tmp / "train_job.py"
    script.write_text(SCRIPT)
    out = tmp / name
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    args = [str(script), str(out), str(epochs), ckpt, "1" if resume else "0", schedule]
    if procs == 1:
        cmd = [sys.executable, *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={procs}", *args]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    meta = json.loads((tmp / f"{name}.json").read_text())
    states = [torch.load(tmp / f"{name}.rank{r}.pt") for r in range(procs)]
    return meta, states


def _close(a: dict, b: dict, atol: float = 1e-5) -> None:
    for k in a:
        assert torch.allclose(a[k], b[k], atol=atol, rtol=0), (k, (a[k] - b[k]).abs().max())


@pytest.mark.slow
def test_two_processes_match_one(tmp_path: Path) -> None:
    one, (w1,) = _run(tmp_path, "single", 1, 3)
    two, (r0, r1) = _run(tmp_path, "ddp", 2, 3)
    assert one["world"] == 1 and two["world"] == 2
    _close(r0, r1, atol=0)  # the ranks hold one model
    _close(w1, r0)
    # metrics are the whole job's, as one process counts them
    for a, b in zip(one["history"], two["history"], strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["train_top1"] == pytest.approx(b["train_top1"])
    # and training changed the weights (the comparison is not of two untouched models)
    torch.manual_seed(0)
    first = torch.nn.Linear(12, 32)
    assert not torch.allclose(first.weight, w1["0.weight"])


@pytest.mark.slow
def test_rank_zero_checkpoints_and_the_job_resumes(tmp_path: Path) -> None:
    # a constant schedule, so that 2 epochs then 1 more is the same run as 3 at once
    ckpt = tmp_path / "job.pt"
    _run(tmp_path, "part", 2, 2, str(ckpt), schedule="constant")
    assert ckpt.exists()
    resumed, (r0, _) = _run(tmp_path, "resumed", 2, 3, str(ckpt), resume=True,
                            schedule="constant")  # fmt: skip
    assert len(resumed["history"]) == 3  # two epochs restored, one trained
    _, (straight,) = _run(tmp_path, "straight", 1, 3, schedule="constant")
    _close(straight, r0)
