"""Several processes, one benchmark: facts are sharded with accelerate's ``PartialState``.

The same command works alone (one process, no process group) and under ``accelerate launch``
(one process per GPU, or several CPU processes with the gloo backend). Facts are independent,
so processes never talk except at barriers: before writing (the main process tidies the results
file) and at the end (the main process merges the part files).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Callable, Sequence, TypeVar

import torch

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class ProcessContext:
    """Where this process stands among the benchmark's processes."""

    index: int = 0
    count: int = 1
    device: str | None = None  # the device accelerate assigned; None = use the model spec's
    barrier: Callable[[], None] = field(default=lambda: None, repr=False, compare=False)

    @property
    def is_main(self) -> bool:
        return self.index == 0

    @property
    def distributed(self) -> bool:
        return self.count > 1

    def wait(self) -> None:
        self.barrier()

    def shard(self, items: Sequence[T]) -> list[T]:
        """Round-robin share of ``items``: balanced even when facts are sorted by relation."""
        return list(items[self.index :: self.count])


SINGLE_PROCESS = ProcessContext()


def launched_distributed() -> bool:
    """True under ``accelerate launch``/``torchrun`` with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def process_context(device: str = "auto", timeout_s: float = 24 * 3600.0) -> ProcessContext:
    """The current process's place: alone, or one of an ``accelerate launch`` group.

    On CPU-only machines (or ``--device cpu``, or ``accelerate launch --cpu``) the group uses gloo.
    The barrier timeout is long because shards finish at different times and the main process
    waits for the slowest before merging.
    """
    if not launched_distributed():
        return SINGLE_PROCESS
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    cpu = device == "cpu" or not torch.cuda.is_available() or parse_flag_from_env("ACCELERATE_USE_CPU")
    state = PartialState(cpu=cpu, timeout=timedelta(seconds=timeout_s))
    log.info(
        "process %d of %d on %s (%s backend)", state.process_index, state.num_processes, state.device, state.backend
    )
    return ProcessContext(
        index=state.process_index,
        count=state.num_processes,
        device=str(state.device),
        barrier=state.wait_for_everyone,
    )
