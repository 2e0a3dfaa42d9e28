"""Which jobs a child runs, since when: a table in memory shared by the child and its master.

Why not a report line per job: at thousands of jobs a second, two pipe writes per job in
the child and a wake-up of the master's loop per read cost the master 10-15% of a core
and the child a system call per start and end. Here a job thread writes its slot (a few
bytes, no system call) and the master reads the table when it needs it: each loop pass
for max_run_time, and once the child is dead for the reclaim.

Why not batched reports instead: a report sent later is a report missing when a job kills
its process at once, and the master would then release that job without counting an
attempt, so a job that crashes its process could run forever. A slot is written before
`perform` starts, so what the master reads after a crash is exactly "started, not ended".

Layout: one anonymous MAP_SHARED mapping per child, made by the master before the fork
(the child inherits it), SLOTS slots of 32 bytes, one per job thread:

    job id (int64, 0 = idle) | started (float64, time.monotonic()) | max_run_time (float64)
    | jobs this slot ended (uint64)

Only the slot's own thread writes it. A start writes started and max_run_time first and
the job id last; an end clears the job id, then counts. So a reader that sees a job id
also sees its start (or the start of the thread's next job, which is later: never a
false max_run_time kill), and a process killed half-way through a write leaves either no
job in the slot (perform had not started) or the whole job.
"""

from __future__ import annotations

import mmap
import struct
import threading
from dataclasses import dataclass

_SLOT = struct.Struct("=qddQ")
_ID = struct.Struct("=q")
_TIMES = struct.Struct("=dd")
_DONE = struct.Struct("=Q")
SLOT_SIZE = _SLOT.size  # 32


@dataclass(frozen=True)
class Running:
    """One job a child runs: started at `started` (time.monotonic(), one clock per host)."""

    job_id: int
    started: float
    max_run_time: float
    slot: int


class RunningTable:
    """The shared slots of one child. Made by the master; written by the child's job threads."""

    def __init__(self, slots: int) -> None:
        if slots < 1:
            raise ValueError(f"a running table needs at least one slot, not {slots}")
        self.slots = slots
        self._map = mmap.mmap(-1, slots * SLOT_SIZE, flags=mmap.MAP_SHARED)
        self._owners: dict[int, int] = {}  # thread ident -> slot (in the child)
        self._lock = threading.Lock()

    # -- the child's side ------------------------------------------------------------------
    def slot_for_thread(self) -> int | None:
        """This thread's slot (the first call takes a free one); None when all are taken.

        Job threads live as long as their worker, so max_claims slots are enough; a thread
        without a slot reports over the pipe instead (child_process).
        """
        ident = threading.get_ident()
        slot = self._owners.get(ident)
        if slot is None:
            with self._lock:
                slot = self._owners.get(ident)
                if slot is None:
                    if len(self._owners) >= self.slots:
                        return None
                    slot = self._owners[ident] = len(self._owners)
        return slot

    def start(self, slot: int, job_id: int, started: float, max_run_time: float) -> None:
        """The slot's thread starts `job_id` (written before perform runs)."""
        offset = slot * SLOT_SIZE
        _TIMES.pack_into(self._map, offset + 8, started, max_run_time)
        _ID.pack_into(self._map, offset, job_id)

    def end(self, slot: int) -> None:
        """The slot's job ended (whatever its outcome)."""
        offset = slot * SLOT_SIZE
        _ID.pack_into(self._map, offset, 0)
        (done,) = _DONE.unpack_from(self._map, offset + 24)
        _DONE.pack_into(self._map, offset + 24, done + 1)

    # -- the master's side -----------------------------------------------------------------
    def read(self) -> tuple[list[Running], int]:
        """The jobs running now (started, not ended), and how many jobs ended in all
        (nothing once closed: the master is done with that child)."""
        running: list[Running] = []
        done = 0
        if self._map.closed:
            return running, done
        for slot in range(self.slots):
            job_id, started, max_run_time, ended = _SLOT.unpack_from(self._map, slot * SLOT_SIZE)
            done += ended
            if job_id:
                running.append(Running(job_id, started, max_run_time, slot))
        return running, done

    def close(self) -> None:
        """Unmap (the master, once the child is reaped and reclaimed)."""
        if not self._map.closed:
            self._map.close()
