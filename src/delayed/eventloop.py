"""The async lane: one asyncio event loop in its own thread, running a worker's async jobs.

A job class with `async def perform` runs here, one task per job, not a thread per job: a
worker process has `max_claims` job threads for sync jobs and this one loop for up to
`max_async_claims` async jobs at once (delayed.worker claims for each lane apart, so neither
starves the other). The loop thread only awaits; the executor turns each record into an
Outcome (with the job's max_run_time as an asyncio timeout), and `done(record, outcome)`
hands it on exactly as a job thread does.

A forced stop cancels the tasks still running (a real cancellation, unlike a sync job's
abandoned thread): their outcome is None, so their rows are released, not written.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable

from .record import JobRecord, Outcome

log = logging.getLogger("delayed.worker")

_loop_threads: set[int] = set()  # idents of the threads running an EventLoopThread's loop


def in_loop_thread() -> bool:
    """True in a thread running async jobs: one thread for many jobs at once, so whatever
    keeps one record per thread (the supervisor's shared running table) must key by job."""
    return threading.get_ident() in _loop_threads


# How long a forced stop waits for cancelled tasks to unwind before leaving the loop thread
# to itself (a daemon thread: a job blocking the loop with sync code cannot be cancelled).
CANCEL_WAIT = 1.0


class EventLoopThread:
    """One event loop in a daemon thread named `name`; `submit(record)` from any thread."""

    def __init__(
        self,
        execute: Callable[[JobRecord], Awaitable[Outcome]],
        done: Callable[[JobRecord, Outcome | None], None],
        name: str = "delayed-async",
    ) -> None:
        self._execute = execute
        self._done = done
        self.abandoned = False  # set by the worker after a forced stop: drop outcomes
        self.loop = asyncio.new_event_loop()
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        _loop_threads.add(threading.get_ident())
        try:
            self.loop.run_forever()
        finally:
            _loop_threads.discard(threading.get_ident())
            self._stopped.set()

    def submit(self, record: JobRecord) -> None:
        self.loop.call_soon_threadsafe(self._start, record)

    def _start(self, record: JobRecord) -> None:
        task = self.loop.create_task(self._run(record), name=f"delayed-job-{record.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, record: JobRecord) -> None:
        outcome: Outcome | None = None
        try:
            outcome = await self._execute(record)
        except asyncio.CancelledError:
            outcome = None  # a forced stop: the row is released, not written
        finally:
            self._done(record, outcome)

    def shutdown(self, cancel: bool = False) -> None:
        """Stop the loop once its tasks end (the worker waited for them), or cancel them first."""
        if self.loop.is_closed():
            return
        if cancel:
            self.loop.call_soon_threadsafe(self._cancel_all)
            if not self._stopped.wait(CANCEL_WAIT):
                log.warning("async jobs did not end within %g s of their cancellation", CANCEL_WAIT)
                return  # the loop is blocked; its daemon thread is left to the process's exit
        else:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._stopped.wait()
        self._thread.join()
        self.loop.close()

    def _cancel_all(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if not tasks:
            self.loop.stop()
            return
        gathered = asyncio.gather(*tasks, return_exceptions=True)
        gathered.add_done_callback(lambda _: self.loop.stop())
