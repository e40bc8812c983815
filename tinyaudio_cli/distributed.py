"""Running `transcribe`, `eval` and `train` under torchrun: one process per accelerator, on one node or many.

torchrun sets WORLD_SIZE, RANK and LOCAL_RANK for every process it starts. Each process joins one group
(NCCL on CUDA, gloo otherwise), works on a disjoint share of the inputs, and the results are gathered
so that one process (rank 0) reports them. Without torchrun everything here is the identity: one rank.
This module is the only reader of torchrun's environment and the only place a process group is joined.
"""

from __future__ import annotations

import heapq
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

Item = TypeVar("Item")

_owned = False  # whether init() started the process group (and close() should end it)


def world() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment; (0, 1, 0) without it."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return 0, 1, 0
    return int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    return world()[0] == 0


def init(device: str = "auto") -> str:
    """Join torchrun's process group and return this rank's device.

    A CUDA device ("auto" with CUDA, "cuda", "cuda:N") becomes cuda:LOCAL_RANK, so every process on a node
    has its own accelerator, and the group talks NCCL; anything else keeps its device and talks gloo.
    Without torchrun nothing happens and `device` comes back as given."""
    global _owned
    rank, size, local_rank = world()
    if size == 1:
        return device
    import torch
    from torch import distributed

    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if cuda:
        device = f"cuda:{local_rank}"
        torch.cuda.set_device(torch.device(device))
    elif device == "auto":
        device = "cpu"
    if not distributed.is_initialized():
        distributed.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=size)
        _owned = True
    return device


def close() -> None:
    """Leave the process group init() joined (a group someone else started is left alone)."""
    global _owned
    if not _owned:
        return
    from torch import distributed

    if distributed.is_initialized():
        distributed.destroy_process_group()
    _owned = False


def gather(value: Any) -> list[Any]:
    """Every rank's `value`, in rank order, on every rank (any picklable object); [value] with one rank."""
    size = world()[1]
    if size == 1:
        return [value]
    from torch import distributed

    gathered: list[Any] = [None] * size
    distributed.all_gather_object(gathered, value)
    return gathered


def broadcast(value: Any) -> Any:
    """Rank 0's `value` on every rank; `value` itself with one rank."""
    if world()[1] == 1:
        return value
    from torch import distributed

    holder = [value]
    distributed.broadcast_object_list(holder, src=0)
    return holder[0]


def all_sum(values: Sequence[float], device: Any = "cpu") -> list[float]:
    """The element-wise sum of `values` over every rank (float64 on `device`, where NCCL can reach it)."""
    if world()[1] == 1:
        return [float(value) for value in values]
    import torch
    from torch import distributed

    tensor = torch.tensor(list(values), dtype=torch.float64, device=device)
    distributed.all_reduce(tensor)
    return tensor.tolist()


def barrier() -> None:
    """Wait until every rank gets here; nothing with one rank."""
    if world()[1] > 1:
        from torch import distributed

        distributed.barrier()


@dataclass
class Dist:
    """This process's place in a torchrun job (rank 0 of 1 without one), for code that carries it around."""

    rank: int
    world: int
    device: Any  # a torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0

    def sum(self, values: Sequence[float]) -> list[float]:
        return all_sum(values, self.device)

    def gather(self, value: Any) -> list[Any]:
        return gather(value)

    def barrier(self) -> None:
        barrier()

    def close(self) -> None:
        close()


def join(device: Any) -> Dist:
    """init() for a resolved torch.device: this rank's place, with its own accelerator under torchrun."""
    import torch

    rank, size, _ = world()
    return Dist(rank, size, torch.device(init(str(device))))


def shard_by_weight(items: Sequence[Item], weights: Sequence[float], rank: int, world_size: int) -> list[Item]:
    """This rank's share of `items`, in their original order: heaviest first, each to the least-loaded rank
    (ties to the lower rank, equal weights in input order), so the result is the same on every process."""
    if len(items) != len(weights):
        raise ValueError(f"{len(items)} items but {len(weights)} weights")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside a world of {world_size}")
    loads = [(0.0, r) for r in range(world_size)]  # a heap of (load, rank)
    mine: list[int] = []
    for index in sorted(range(len(items)), key=lambda i: (-weights[i], i)):
        load, owner = heapq.heappop(loads)
        heapq.heappush(loads, (load + weights[index], owner))
        if owner == rank:
            mine.append(index)
    return [items[index] for index in sorted(mine)]


def shard_stream(
    items: Iterable[Item], weight: Callable[[Item], float], rank: int, world_size: int
) -> Iterator[tuple[int, Item]]:
    """(position, item) for this rank's share of a stream too long to hold: each item in turn goes to the
    least-loaded rank so far (ties to the lower rank). Every rank must see the same items and weights."""
    loads = [0.0] * world_size
    for index, item in enumerate(items):
        owner = min(range(world_size), key=loads.__getitem__)
        loads[owner] += weight(item)
        if owner == rank:
            yield index, item
