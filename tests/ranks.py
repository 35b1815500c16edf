"""Helpers for tests that spawn CPU ranks on gloo (``torch.multiprocessing.spawn``).

Imported as ``tests.ranks``: the suite runs as ``python -m pytest`` (``make test``), which puts the
repository root on ``sys.path``, as spawned workers need to import their test module anyway.
"""

from __future__ import annotations

import os
import socket

import torch


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1 (for ``MASTER_PORT``)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def as_rank(rank: int, world: int, port: int) -> None:
    """Make this process rank ``rank`` of ``world`` as torchrun would (its environment), on one thread."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
