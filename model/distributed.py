"""Data-parallel pretraining under ``torchrun`` (DistributedDataParallel).

``torchrun --nproc_per_node N -m tracekws.cli train ...`` starts N copies of the trainer with
``WORLD_SIZE``/``RANK``/``LOCAL_RANK`` set; :func:`from_env` joins them into one process
group (gloo on CPU, nccl when CUDA is available). Every rank draws the same global batch from
the same seeded generator and augments it the same way, then keeps its own contiguous shard;
DDP averages the shards' gradients, which (equal shards, mean losses) is the gradient of the
whole batch. N processes therefore train the same run as one process at the same global
batch, up to float rounding (tested with two CPU processes). Only rank 0 validates and
writes checkpoints, history and curves; every rank reads the checkpoint on ``--resume``.

Without ``WORLD_SIZE`` (or with 1) nothing here starts a process group and the trainer runs
as it always did.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Dist:
    """This process's place in the group (world 1: a plain single-process run)."""

    world: int = 1
    rank: int = 0
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        """Rank 0: the one process that validates and writes files."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def shard(self, n: int) -> slice:
        """This rank's contiguous share of a global batch of ``n`` (n divisible by world)."""
        if n % self.world:
            raise ValueError(f"global batch {n} does not split evenly over {self.world} "
                             "processes: pick --batch divisible by --nproc_per_node")
        per = n // self.world
        return slice(self.rank * per, (self.rank + 1) * per)

    def wrap(self, net: nn.Module) -> nn.Module:
        """DDP around ``net`` (the module itself when not distributed). No ``device_ids``:
        inputs are moved by the trainer, and keyword arguments such as the SNN's ``spikes``
        list reach the module itself instead of a copy. On CUDA, batch norm (the CNN
        baseline) is synchronised across ranks."""
        if not self.active:
            return net
        from torch.nn.parallel import DistributedDataParallel

        if self.device.type == "cuda":
            net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
        return DistributedDataParallel(net)

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum over the ranks (epoch totals for the history)."""
        if not self.active:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(t)
        return t.tolist()

    def barrier(self) -> None:
        if self.active:
            torch.distributed.barrier()

    def close(self) -> None:
        if self.active and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def from_env() -> Dist:
    """Join the process group ``torchrun`` describes in the environment, if any."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend)
    return Dist(world, rank, local, device)
