"""Data-parallel training under ``torchrun``: :func:`squeezer.fit` on several processes.

Launched by ``torchrun`` (which sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the
rendezvous address), :func:`~squeezer.fit` joins the process group itself (``gloo`` on the
CPU, ``nccl`` for CUDA), wraps the model in ``DistributedDataParallel`` and gives each
process a disjoint slice of every global batch. Every process reads the same global batches
in the same order (the same seed), so shuffling and augmentation are those of a single
process; the slices' losses are weighted by their share of the global batch, so the averaged
gradient is the single-process gradient of that batch and the weights follow the same path
(up to float rounding in the reduction). Only rank 0 writes checkpoints and prints; every
rank can resume from the file.

BatchNorm keeps per-process batch statistics, as DDP does by default (rank 0's running
statistics are broadcast each step); ``TrainConfig(sync_bn=True)`` converts it to
``SyncBatchNorm`` where the backend supports it (CUDA).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class Context:
    """This process's place in the job (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def launched() -> bool:
    """Whether this process was started by ``torchrun`` (or another launcher) for a job of
    more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device: torch.device) -> Context:
    """Join the process group when launched for several processes (once per process)."""
    import torch.distributed as dist

    if not dist.is_available():
        return Context()
    if not dist.is_initialized():
        if not launched():
            return Context()
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    return Context(dist.get_rank(), dist.get_world_size(),
                   int(os.environ.get("LOCAL_RANK", "0")))  # fmt: skip


def device_for(ctx: Context, device: torch.device) -> torch.device:
    """Each process its own GPU (``cuda:LOCAL_RANK``) when training on CUDA."""
    if ctx.active and device.type == "cuda" and device.index is None:
        return torch.device("cuda", ctx.local_rank)
    return device


def wrap(model: nn.Module, ctx: Context, device: torch.device, sync_bn: bool) -> nn.Module:
    """The module to run forward and backward through: ``model`` itself, or its DDP wrapper."""
    if not ctx.active:
        return model
    from torch.nn.parallel import DistributedDataParallel

    if sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [device.index] if device.type == "cuda" else None
    # find_unused_parameters: dynamic layers (mixture of experts, stochastic depth, early
    # exits) leave parameters out of some steps
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)


def shard(x: Tensor, y: Tensor, ctx: Context) -> tuple[Tensor, Tensor, float]:
    """This rank's slice of a global batch, and the weight of its loss (its share of the
    batch times the number of ranks) that makes DDP's averaged gradient the whole batch's."""
    if not ctx.active:
        return x, y, 1.0
    n = x.shape[0]
    xs, ys = torch.tensor_split(x, ctx.world), torch.tensor_split(y, ctx.world)
    mine_x, mine_y = xs[ctx.rank], ys[ctx.rank]
    return mine_x, mine_y, mine_x.shape[0] * ctx.world / max(n, 1)


def all_sum(values: list[float], ctx: Context, device: torch.device) -> list[float]:
    """``values`` summed over every rank."""
    if not ctx.active:
        return values
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def barrier(ctx: Context) -> None:
    if ctx.active:
        import torch.distributed as dist

        dist.barrier()
