"""Sharding an evaluation across processes (``accelerate launch`` / ``torchrun``).

Every process scores a disjoint, strided share of the images still missing, writes its own
``predictions.rank<r>.jsonl``, and after a barrier the main process merges the shares into the
data set's ``predictions.jsonl``. The share is computed from what is *missing*, so a resumed run
may use a different number of processes than the interrupted one.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ..parallel import accelerate_state

__all__ = ["ProcessInfo", "SINGLE_PROCESS", "MainProcessFailed", "process_info", "on_main", "shard", "shard_file",
           "shard_files"]

T = TypeVar("T")


def _no_barrier() -> None:
    return None


def _same(obj: Any) -> Any:
    return obj


class MainProcessFailed(RuntimeError):
    """Raised on the other ranks when a step that only the main process runs failed there."""


@dataclass(frozen=True)
class ProcessInfo:
    """Where this process sits in the job. ``barrier`` blocks until every process reaches it;
    ``share(obj)`` returns the main process's ``obj`` on every rank (a collective, like barrier)."""

    rank: int = 0
    world_size: int = 1
    device: str | None = None
    barrier: Callable[[], None] = field(default=_no_barrier, repr=False, compare=False)
    share: Callable[[Any], Any] = field(default=_same, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise ValueError(f"invalid process rank {self.rank} of world size {self.world_size}")

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE_PROCESS = ProcessInfo()


def process_info() -> ProcessInfo:
    """This process's rank, world size, device and barrier.

    A single process (no ``WORLD_SIZE`` > 1 in the environment) does not import accelerate. Under
    ``accelerate launch`` or ``torchrun``, :class:`accelerate.PartialState` sets up the process
    group (gloo on CPU with ``ACCELERATE_USE_CPU=1``, NCCL on GPUs) and provides the device.
    """
    state = accelerate_state()
    if state is None:
        return SINGLE_PROCESS
    return ProcessInfo(
        rank=state.process_index,
        world_size=state.num_processes,
        device=str(state.device),
        barrier=state.wait_for_everyone,
        share=_broadcast_from_main,
    )


def _broadcast_from_main(obj: Any) -> Any:
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)  # the process group accelerate's PartialState set up
    return box[0]


def on_main(proc: ProcessInfo, fn: Callable[[], T]) -> T | None:
    """Run ``fn`` on the main process only; every rank learns whether it failed.

    A main-only step that raises would otherwise leave the other ranks waiting at the next
    barrier for a process that is gone. The main process re-raises its own error; the others
    raise :class:`MainProcessFailed` naming it. Returns ``fn()``'s result on the main process,
    None elsewhere.
    """
    result, error = None, None
    if proc.is_main:
        try:
            result = fn()
        except Exception as err:  # re-raised below, once the others have been told
            error = err
    told = proc.share(None if error is None else f"{type(error).__name__}: {error}")
    if error is not None:
        raise error
    if told is not None:
        raise MainProcessFailed(f"the main process stopped: {told}")
    return result


def shard(items: Sequence[T], rank: int, world_size: int) -> list[T]:
    """This rank's share: items ``rank, rank + world_size, ...``.

    Strided rather than contiguous because label files are often sorted (by reference image,
    distortion, size): stride keeps the shares alike in content and therefore in run time.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"invalid process rank {rank} of world size {world_size}")
    return list(items[rank::world_size])


def shard_file(folder: str | os.PathLike, rank: int) -> Path:
    """The per-rank predictions file in a data set's output folder."""
    return Path(folder) / f"predictions.rank{rank}.jsonl"


def shard_files(folder: str | os.PathLike) -> list[Path]:
    """Every per-rank predictions file present (also those left by an interrupted run)."""
    return sorted(Path(folder).glob("predictions.rank*.jsonl"))
