"""torchrun / DistributedDataParallel: the same training code on one process or several (gloo on CPU, NCCL on GPUs)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist

from shared.devices import choose_device


@dataclass
class Dist:
    rank: int
    world: int
    device: torch.device
    #: sums a float64 CPU tensor over ranks (None in a single process)
    reduce: Callable[[torch.Tensor], torch.Tensor] | None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        if self.world == 1:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def setup(requested_device: str) -> Dist:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); otherwise a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist(0, 1, choose_device(requested_device), None)
    use_cuda = torch.cuda.is_available() and requested_device != "cpu"
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    rank = dist.get_rank()
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}") if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)

    def reduce(t: torch.Tensor) -> torch.Tensor:
        buf = t.to(device)
        dist.all_reduce(buf, op=dist.ReduceOp.SUM)
        return buf.cpu()

    return Dist(rank, dist.get_world_size(), device, reduce)


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
