"""A pool while the master runs: how many children it wants now, and its crash-loop back-off.

`settings.Pool` is what the file says and never changes; `PoolState` is what the arbiter
changes: TTIN/TTOU move `workers`, and children that die unexplained before doing any
work delay the next spawn (1 s, 2 s, 4 s, ... up to MAX_BACKOFF), so a broken deploy
never makes the master spin. A HUP builds new states from the new file; the children
of the old ones keep theirs until they have drained.
"""

from __future__ import annotations

from dataclasses import dataclass

from .settings import Pool

# A child that dies unexplained before it booted, or before it finished any job and sooner
# than this after its spawn, counts towards a crash loop; one that booted and finished a
# job, or lived this long, ends the streak.
CRASH_WINDOW = 2.0
MAX_BACKOFF = 60.0
FORK_RETRY = 5.0  # seconds before trying again after fork() itself failed


@dataclass(eq=False)  # compared by identity: a child belongs to this state, not an equal one
class PoolState:
    pool: Pool
    workers: int  # children wanted now (starts at the configured number; TTIN/TTOU move it)
    failures: int = 0  # children in a row that died soon after starting
    next_spawn_at: float = 0.0  # no spawn before this (time.monotonic())

    @classmethod
    def of(cls, pool: Pool) -> PoolState:
        return cls(pool, pool.workers)

    @property
    def name(self) -> str:
        return self.pool.name

    @property
    def kind(self) -> str:
        return self.pool.kind

    @property
    def max_claims(self) -> int:
        return self.pool.max_claims

    def may_spawn(self, now: float) -> bool:
        return now >= self.next_spawn_at

    def early_death(self, now: float) -> float:
        """One more child died unexplained before doing any work: the back-off, in seconds."""
        self.failures += 1
        delay = min(MAX_BACKOFF, 2.0 ** (self.failures - 1))
        self.next_spawn_at = now + delay
        return delay

    def healthy(self) -> None:
        """A child lived or worked: whatever died before was not a loop."""
        self.failures = 0

    def fork_failed(self, now: float) -> None:
        self.next_spawn_at = now + FORK_RETRY
