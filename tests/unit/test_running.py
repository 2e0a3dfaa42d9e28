"""The running-jobs table a child shares with its master (delayed.supervisor.running)."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from datetime import datetime

import pytest

from delayed.eventloop import EventLoopThread
from delayed.record import JobRecord
from delayed.supervisor import protocol
from delayed.supervisor.child_process import _job_hooks
from delayed.supervisor.running import Running, RunningTable

from .test_child_process import Pipe


def record(job_id: int) -> JobRecord:
    return JobRecord(job_id, 0, 0, "{}", "Noop", run_at=datetime(2026, 1, 1))


def in_thread(fn, *args) -> None:  # type: ignore[no-untyped-def]
    thread = threading.Thread(target=fn, args=args)
    thread.start()
    thread.join()


def test_each_live_thread_gets_its_own_slot_until_they_run_out() -> None:
    table = RunningTable(2)
    try:
        slots: list[int | None] = []
        lock, go = threading.Lock(), threading.Barrier(3)

        def take() -> None:
            with lock:
                slots.append(table.slot_for_thread())
            go.wait()  # all three alive at once (a dead thread's ident, and slot, is reused)

        threads = [threading.Thread(target=take) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(slots, key=str) == [0, 1, None]
    finally:
        table.close()


def test_the_master_reads_what_a_killed_child_started_and_did_not_end() -> None:
    """Across a real fork and SIGKILL: the table is what the reclaim charges."""
    table = RunningTable(4)
    try:
        pid = os.fork()
        if pid == 0:  # the child: two jobs started, one of them ended, then it hangs
            table.start(0, 11, 100.0, 60.0)
            table.start(1, 12, 101.0, 5.0)
            table.end(1)
            table.start(1, 13, 102.0, 5.0)
            table.end(1)
            time.sleep(60)  # killed long before
            os._exit(0)
        deadline = time.monotonic() + 10
        while table.read()[1] < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        assert table.read() == ([Running(11, 100.0, 60.0, 0)], 2)
    finally:
        table.close()


def test_a_closed_table_reads_as_empty() -> None:
    table = RunningTable(1)
    table.start(0, 5, 1.0, 2.0)
    table.close()
    table.close()  # twice is harmless
    assert table.read() == ([], 0)


def test_a_table_needs_a_slot() -> None:
    with pytest.raises(ValueError, match="at least one slot, not 0"):
        RunningTable(0)


def test_the_hooks_write_the_slot_and_report_over_the_pipe_only_without_one() -> None:
    table, pipe = RunningTable(1), Pipe()
    try:
        start, end = _job_hooks(table, pipe.reporter)
        start(record(1), 30.0)
        assert [job.job_id for job in table.read()[0]] == [1] and pipe.reports() == []
        in_thread(start, record(2), 30.0)  # a second thread: no slot left
        in_thread(end, record(2))
        reports = pipe.reports()
        assert [type(r) for r in reports] == [protocol.Started, protocol.Ended]
        assert (reports[0].job_id, reports[0].max_run_time, reports[1].job_id) == (2, 30.0, 2)  # type: ignore[union-attr]
        end(record(1))
        assert table.read() == ([], 1)
    finally:
        table.close()
        pipe.close()


def test_async_jobs_on_the_event_loop_report_over_the_pipe_never_sharing_the_loops_slot() -> None:
    """The loop thread runs many jobs at once: each is a report line keyed by its id."""
    table, pipe = RunningTable(4), Pipe()
    start, end = _job_hooks(table, pipe.reporter)

    async def run(record_id: int) -> None:
        start(record(record_id), 32.0)
        await asyncio.sleep(0)

    async def finish(record_id: int) -> None:
        end(record(record_id))

    lane = EventLoopThread(lambda r: None, lambda r, o: None)  # type: ignore[arg-type, return-value]
    try:
        for coroutine in (run(1), run(2), finish(1), finish(2)):
            asyncio.run_coroutine_threadsafe(coroutine, lane.loop).result(5)
        reports = pipe.reports()
        assert [(type(r).__name__, r.job_id) for r in reports] == [
            ("Started", 1),
            ("Started", 2),
            ("Ended", 1),
            ("Ended", 2),
        ]
        assert table.read() == ([], 0), "no slot taken by the loop thread"
    finally:
        lane.shutdown()
        table.close()
        pipe.close()
