"""Several processes (``torchrun`` / ``accelerate launch``, one or many nodes): who does what, and
how the processes wait for each other.

The pipeline runs every training stage on every process (the :class:`~tskd.engine.Trainer` splits
each global batch across them) but lets only the *main* process (global rank 0) do work that must
happen once: preparing the data, building the transfer set, writing stage summaries, exporting.
:func:`on_main` is that pattern: rank 0 runs a function while the others wait; when it fails, every
rank raises (the others a :class:`MainProcessError`, or a :class:`~tskd.errors.CancelledError` when
rank 0 was stopped), so no process is left waiting for a partner that has gone.

Waiting happens on a separate CPU (gloo) process group with a long timeout (24 hours, or
``TSKD_DIST_WAIT_TIMEOUT_S`` seconds): rank-0-only work can take hours on a large dataset, far
beyond the default collective timeout, and waiting ranks do not hold a GPU busy. The training
collectives use the default group, whose timeout is ``TSKD_DIST_TIMEOUT_S`` (default one hour, so
that a long validation on rank 0 does not trip NCCL's ten-minute default).

In a single process (no ``WORLD_SIZE`` > 1 in the environment) every function here is a no-op or
calls straight through.
"""

from __future__ import annotations

import atexit
import logging
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, TypeVar

from tskd.errors import CancelledError, TSKDError

__all__ = [
    "ProcessInfo",
    "MainProcessError",
    "process_info",
    "is_main_process",
    "init_distributed",
    "on_main",
    "broadcast_object",
    "barrier",
    "agree",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Timeout of the waiting group (rank-0-only work), seconds.
WAIT_TIMEOUT_S = 24 * 3600
#: Timeout of the default (training) group, seconds.
COLLECTIVE_TIMEOUT_S = 3600

_wait_group: Any = None
_main_depth = 0  # > 0 while rank 0 runs inside on_main (a nested on_main then calls straight through)


class MainProcessError(TSKDError):
    """Raised on the other ranks when the main process failed in work they were waiting for."""

    exit_code = 1


@dataclass(frozen=True)
class ProcessInfo:
    """Where this process stands among the processes of a run.

    Args:
        rank: global rank (0 is the main process).
        world_size: number of processes over all nodes.
        local_rank: rank on this node (the GPU index under ``torchrun``).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def process_info() -> ProcessInfo:
    """This process's rank and the process count (from the process group, else the launcher's
    environment variables ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``)."""
    import torch.distributed as dist

    local = _env_int("LOCAL_RANK", 0)
    if dist.is_available() and dist.is_initialized():
        return ProcessInfo(dist.get_rank(), dist.get_world_size(), local)
    return ProcessInfo(_env_int("RANK", 0), _env_int("WORLD_SIZE", 1), local)


def is_main_process() -> bool:
    """True on global rank 0 (and in a single process)."""
    return process_info().is_main


def init_distributed(*, cpu: bool) -> ProcessInfo:
    """Join the process group when started by a launcher with ``WORLD_SIZE`` > 1; nothing otherwise.

    Args:
        cpu: train on CPUs (gloo) rather than GPUs (NCCL, one GPU per process: ``LOCAL_RANK``).
            Must agree with the stages' ``train.device``, since ``accelerate`` keeps one state per process.
    """
    info = process_info()
    if not info.distributed:
        return info
    _join(cpu)
    _group()
    info = process_info()
    logger.debug("process %d of %d (local rank %d) joined the process group", info.rank, info.world_size,
                 info.local_rank)
    return info


def _join(cpu: bool) -> None:
    """Initialise the default process group through ``accelerate`` (so its state agrees)."""
    import torch
    import torch.distributed as dist
    from accelerate import PartialState

    if dist.is_initialized():
        return
    if not cpu:
        _warn_if_more_processes_than_gpus()
    timeout = timedelta(seconds=_env_int("TSKD_DIST_TIMEOUT_S", COLLECTIVE_TIMEOUT_S))
    PartialState(cpu=cpu or not torch.cuda.is_available(), timeout=timeout)
    if not dist.is_initialized():
        raise RuntimeError(
            f"WORLD_SIZE is {os.environ.get('WORLD_SIZE')} but no process group could be started; "
            "launch with torchrun or accelerate launch"
        )


def _warn_if_more_processes_than_gpus() -> None:
    """Warn (once per node: local rank 0) when the launcher started more processes on this node than it
    has GPUs: NCCL wants one process per GPU. Checked here rather than by ``--nproc``'s launcher,
    which does not import torch."""
    import torch

    local_processes = _env_int("LOCAL_WORLD_SIZE", 0)
    if _env_int("LOCAL_RANK", 0) != 0 or not torch.cuda.is_available():
        return
    gpus = torch.cuda.device_count()
    if local_processes > gpus:
        logger.warning("%d processes on this machine but it has %d GPU(s); use one process per GPU (--nproc %d)",
                       local_processes, gpus, gpus)


def _group() -> Any:
    """The gloo group used for waiting (created on first use; every rank must get here together)."""
    global _wait_group
    import torch.distributed as dist

    if not dist.is_initialized():
        _join(cpu=False)
    if _wait_group is None:
        timeout = timedelta(seconds=_env_int("TSKD_DIST_WAIT_TIMEOUT_S", WAIT_TIMEOUT_S))
        _wait_group = dist.new_group(backend="gloo", timeout=timeout)
        atexit.register(_shutdown)
    return _wait_group


def _shutdown() -> None:
    """At exit: close the process groups, so that their threads do not abort the interpreter's shutdown."""
    global _wait_group
    import torch.distributed as dist

    _wait_group = None
    try:
        if dist.is_initialized():
            dist.destroy_process_group()
    except Exception:  # exiting anyway; a group already broken by a failed peer is no news
        logger.debug("could not close the process group", exc_info=True)


def broadcast_object(obj: T) -> T:
    """Rank 0's ``obj`` (any picklable object) on every rank."""
    if not process_info().distributed:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0, group=_group())
    return box[0]


def barrier() -> None:
    """Every rank waits here until all have arrived (long timeout, see the module docstring)."""
    if not process_info().distributed:
        return
    import torch.distributed as dist

    dist.barrier(group=_group())


def agree(flag: bool) -> bool:
    """True on every rank when ``flag`` is true on any rank (e.g. "a stop was requested")."""
    if not process_info().distributed:
        return flag
    import torch
    import torch.distributed as dist

    value = torch.tensor([1 if flag else 0], dtype=torch.int32)
    dist.all_reduce(value, op=dist.ReduceOp.MAX, group=_group())
    return bool(value.item())


def on_main(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
    """Run ``fn(*args, **kwargs)`` on rank 0 while the other ranks wait; return its result on rank 0
    and None elsewhere.

    Every rank must call this at the same point. When ``fn`` raises on rank 0, rank 0 re-raises it
    and the others raise :class:`~tskd.errors.CancelledError` (rank 0 was stopped) or
    :class:`MainProcessError` naming rank 0's error. Called again inside ``fn`` on rank 0 it simply
    calls through.
    """
    global _main_depth
    info = process_info()
    if not info.distributed or _main_depth:
        return fn(*args, **kwargs)
    if not info.is_main:
        outcome = broadcast_object(None)
        if outcome is not None:
            if outcome["cancelled"]:
                raise CancelledError(outcome["message"])
            raise MainProcessError(f"the main process (rank 0) failed: {outcome['type']}: {outcome['message']}")
        return None
    _main_depth += 1
    try:
        result = fn(*args, **kwargs)
    except BaseException as exc:
        _main_depth -= 1
        try:
            broadcast_object({"type": type(exc).__name__, "message": str(exc),
                              "cancelled": isinstance(exc, (CancelledError, KeyboardInterrupt))})
        except Exception:  # the others may be gone already; rank 0's own error matters more
            logger.debug("could not tell the other ranks about the failure", exc_info=True)
        raise
    _main_depth -= 1
    broadcast_object(None)
    return result
