"""Small helpers for single-process and `torchrun` (DDP) training.

`torchrun` sets RANK, LOCAL_RANK and WORLD_SIZE; without them everything runs as rank 0 of 1.
NCCL is used on GPU, gloo on CPU.
"""

from __future__ import annotations

import datetime
import os

import torch
import torch.distributed as dist


def env_world() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) from the environment torchrun sets; (0, 0, 1) otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    return rank, local_rank, world


def init(device_kind: str = "auto") -> torch.device:
    """Pick the device and, under torchrun, start the process group. Returns this process's device."""
    rank, local_rank, world = env_world()
    use_cuda = torch.cuda.is_available() if device_kind == "auto" else device_kind == "cuda"
    if use_cuda:
        device = torch.device("cuda", local_rank % max(torch.cuda.device_count(), 1))
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, rank=rank, world_size=world, timeout=datetime.timedelta(minutes=30))
    return device


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_dist() else 0


def world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def is_main() -> bool:
    return rank() == 0


def print0(*args: object, **kwargs: object) -> None:
    """print() on rank 0 only."""
    if is_main():
        print(*args, **kwargs, flush=True)  # type: ignore[call-overload]


def barrier() -> None:
    if is_dist():
        dist.barrier()


def all_gather_objects(obj: object) -> list[object]:
    """Every rank's `obj`, in rank order (a list of one when not distributed)."""
    if not is_dist():
        return [obj]
    out: list[object] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def mean_over_ranks(t: torch.Tensor) -> torch.Tensor:
    """The mean of `t` over all ranks (`t` itself when not distributed). Every rank gets the same values,
    so a non-finite loss on one rank stops all of them together instead of leaving the others waiting
    in their next collective until the timeout."""
    if not is_dist():
        return t
    t = t.clone()
    dist.all_reduce(t)
    return t / world_size()


def cleanup() -> None:
    if is_dist():
        dist.destroy_process_group()
