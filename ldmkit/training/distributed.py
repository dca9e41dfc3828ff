"""torch.distributed for training: set up from torchrun's environment, or a single process.

Launch N processes on one machine with `ldmkit train CONFIG --processes N` (ldmkit/cli/launch.py) or
`torchrun --nproc_per_node N -m ldmkit train CONFIG`, several machines with torchrun's rendezvous
(--nnodes, --rdzv_endpoint). Gloo on CPU, NCCL on GPU. Rank 0 alone logs and saves; data is sharded
by rank (see `EpochSampler`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

from ldmkit.device import pick_device
from ldmkit.errors import LdmkitError

T = TypeVar("T")


@dataclass(frozen=True)
class Distributed:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def on_main(self, fn: Callable[[], T]) -> T | None:
        """fn() on rank 0 while the other ranks wait (its result on rank 0, None elsewhere). An error there ends
        every rank, the others with one line that names it, instead of leaving them at a barrier until the
        process group times out."""
        error, result = None, None
        if self.is_main:
            try:
                result = fn()
            except Exception as err:  # noqa: BLE001 (re-raised below, after the other ranks are told)
                error = err
        if self.enabled:
            message = [None if error is None else f"{type(error).__name__}: {error}"]
            dist.broadcast_object_list(message, src=0)
            if message[0] is not None and not self.is_main:
                raise LdmkitError(f"rank 0 failed: {message[0]}")
        if error is not None:
            raise error
        return result

    def all_reduce_mean(self, value: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            value = value.clone()
            dist.all_reduce(value)
            value /= self.world_size
        return value


def setup_distributed(device_name: str = "auto") -> Distributed:
    """A process group when launched by torchrun (WORLD_SIZE > 1), else the single-process context."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    device = pick_device(device_name)
    if world_size == 1:
        return Distributed(0, 1, device)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        gpus = torch.cuda.device_count()
        if local_rank >= gpus:
            raise LdmkitError(f"process {local_rank} on this machine has no GPU of its own ({gpus} visible); start "
                              "at most one process per GPU")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Distributed(rank, world_size, device)


def teardown_distributed(ctx: Distributed) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()
