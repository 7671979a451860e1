"""Score on many processes (``accelerate launch``): shard the batches, merge in input order.

Every process builds the same batch plan (rank 0 computes it and broadcasts it), drops the
batches that are already done (resume), and takes every ``world_size``-th batch. Each process
scores its share with the ordinary :meth:`Scorer.iter_score` pipeline; every ``chunk`` results
the processes gather their results on rank 0, which yields everything in input order, so rank
0 alone writes one output, incrementally. Each image is scored in the very batch a single
process would have used, so the merged output equals a one-process run.

The communication is behind a tiny :class:`Comm` interface so the sharding and merging logic
is testable without processes (:class:`LocalComm`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Collection, Iterator, Sequence
from itertools import islice
from typing import Any, Protocol

from .results import ScoreFailure, ScoreResult
from .scorer import ImageInput, Scorer

__all__ = [
    "Comm",
    "LocalComm",
    "TorchDistributedComm",
    "accelerate_state",
    "distributed_comm",
    "shard_plan",
    "iter_score_sharded",
]


class Comm(Protocol):
    """What sharded scoring needs from a process group."""

    rank: int
    world_size: int

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""

    def gather(self, obj: Any) -> list[Any] | None:
        """All ranks' ``obj`` (in rank order) on rank 0; ``None`` elsewhere."""

    def finish(self) -> None:
        """Called once by every rank at the end of the job."""


class LocalComm:
    """A one-process group (``world_size`` 1)."""

    rank = 0
    world_size = 1

    def broadcast(self, obj):
        return obj

    def gather(self, obj):
        return [obj]

    def finish(self) -> None:
        pass


class TorchDistributedComm:
    """``torch.distributed`` object collectives on the default process group."""

    def __init__(self):
        import torch.distributed as dist

        self._dist = dist
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()

    def broadcast(self, obj):
        box = [obj]
        self._dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj):
        out = [None] * self.world_size if self.rank == 0 else None
        self._dist.gather_object(obj, out, dst=0)
        return out

    def finish(self) -> None:
        """Wait for every rank (rank 0 may still be writing), then tear the group down."""
        if self._dist.is_initialized():
            self._dist.barrier()
            self._dist.destroy_process_group()


def accelerate_state():
    """accelerate's ``PartialState`` when launched with several processes (``accelerate launch``
    or ``torchrun``: ``WORLD_SIZE`` > 1), else ``None`` without importing accelerate.

    The state initialises the process group (NCCL on GPUs, gloo on CPU) and picks this process's
    device; it is shared by sharded scoring (:func:`distributed_comm`) and ``deqa-eval``.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    import torch
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    # PartialState only builds a CPU (gloo) group when told cpu=True; Accelerator reads the
    # launcher's ACCELERATE_USE_CPU itself, PartialState does not. Without GPUs, CPU ranks are
    # the only option.
    cpu = parse_flag_from_env("ACCELERATE_USE_CPU") or not torch.cuda.is_available()
    return PartialState(cpu=cpu)


def distributed_comm():
    """``(comm, device)`` under ``accelerate launch``/``torchrun`` with several processes, else ``None``."""
    state = accelerate_state()
    if state is None or state.num_processes <= 1:
        return None
    return TorchDistributedComm(), state.device


def shard_plan(plan: Sequence[Sequence[int]], world_size: int, rank: int) -> list[list[int]]:
    """Round-robin batches over ranks: neighbouring batches run at the same time on different
    processes, so rank 0 can release results in input order with little buffering."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside a world of {world_size}")
    return [list(b) for b in plan[rank::world_size]]


def iter_score_sharded(
    scorer: Scorer,
    inputs: Sequence[ImageInput],
    comm: Comm,
    *,
    batch_size: int | None = None,
    num_workers: int = 0,
    skip: Collection[int] = (),
    chunk: int | None = None,
    on_result: Callable[[], None] | None = None,
) -> Iterator[ScoreResult | ScoreFailure]:
    """Like :meth:`Scorer.iter_score` over all processes of ``comm``.

    Rank 0 yields every non-skipped input's result in input order; other ranks yield nothing.
    ``skip`` is read on rank 0 only. ``chunk`` = results per process between merges (default
    16 batches). ``on_result`` is called on rank 0 for every result merged (progress bars).
    """
    inputs = list(inputs)
    batch_size = scorer.default_batch_size if batch_size is None else batch_size
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    # Rank 0 decides; the others follow (grouping by size reads image headers: do it once).
    plan, skip = comm.broadcast(
        (scorer.batch_order(inputs, batch_size), set(skip)) if comm.rank == 0 else None
    )
    plan = [list(b) for b in plan if b and not skip.issuperset(b)]
    shares = [shard_plan(plan, comm.world_size, r) for r in range(comm.world_size)]
    share_orders = [sorted({i for b in share for i in b} - skip) for share in shares]
    chunk = chunk or batch_size * 16
    rounds = max((math.ceil(len(o) / chunk) for o in share_orders), default=0)
    mine = share_orders[comm.rank]
    local = zip(
        mine,
        scorer.iter_score(
            inputs,
            batch_size=batch_size,
            num_workers=num_workers,
            batches=shares[comm.rank],
            skip=skip,
        ),
        strict=True,
    )
    order = sorted({i for b in plan for i in b} - skip)
    pending: dict[int, ScoreResult | ScoreFailure] = {}
    pos = 0
    for _ in range(rounds):
        gathered = comm.gather(list(islice(local, chunk)))
        if comm.rank != 0:
            continue
        for part in gathered:
            pending.update(part)
        while pos < len(order) and order[pos] in pending:
            if on_result is not None:
                on_result()
            yield pending.pop(order[pos])
            pos += 1
    if comm.rank == 0 and pos != len(order):  # pragma: no cover - a bug, not a user error
        raise RuntimeError(f"sharded scoring lost {len(order) - pos} results")
