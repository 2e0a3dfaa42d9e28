"""Job functions for peers that find jobs by import path (chancy): importable as `peer_jobs`."""

from __future__ import annotations

from _proto import send_probe


async def noop() -> None:
    """Does nothing: the drain scenario measures the job system alone."""


async def probe(index: int, t_enqueue: float) -> None:
    send_probe(index, t_enqueue)
