"""Writes job outcomes to the table in batches, off the job threads.

A job thread hands its outcome over and is free for the next job at once; this thread takes
everything queued so far and writes it in one transaction. Under load batches grow by
themselves; when idle an outcome is written as soon as it arrives (no timer). If the write
fails (lost connection), the batch is kept and retried with back-off: no outcome is dropped
while the process lives, and a row whose outcome never lands stays locked, so it runs again
after the lock timeout (at least once).
"""

from __future__ import annotations

import logging
import queue
import threading
import time

from .backends import Backend, Outcome
from .db import describe_error

log = logging.getLogger("delayed.completer")

_STOP = object()
MAX_BATCH = 1000


class Completer:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._done = threading.Condition()
        self._submitted = 0
        self._written = 0
        self._pending_ids: set[int] = set()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="delayed-completer", daemon=True)
        self._conn = None

    def start(self) -> Completer:
        self._thread.start()
        return self

    def put(self, outcome: Outcome) -> None:
        with self._done:
            self._submitted += 1
            self._pending_ids.add(outcome.id)
        self._queue.put(outcome)

    def pending_ids(self) -> set[int]:
        """Ids whose outcome is queued but not yet written (their rows are still locked)."""
        with self._done:
            return set(self._pending_ids)

    @property
    def pending(self) -> int:
        with self._done:
            return self._submitted - self._written

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything put so far is written; False on timeout."""
        with self._done:
            target = self._submitted
            return self._done.wait_for(lambda: self._written >= target, timeout)

    def stop(self, timeout: float = 30.0) -> bool:
        """Write what is queued (retrying for up to `timeout`), then end the thread."""
        deadline = time.monotonic() + timeout
        flushed = self.flush(timeout)
        self._stopping.set()
        self._queue.put(_STOP)
        self._thread.join(max(0.0, deadline - time.monotonic()) + 1.0)
        if not flushed:
            log.error(
                "%d job outcome(s) could not be written before exit; those rows stay locked "
                "and run again after the lock timeout",
                self.pending,
            )
        self._close()
        return flushed

    # -- the thread ------------------------------------------------------------------------
    def _take_batch(self) -> list[Outcome] | None:
        first = self._queue.get()
        if first is _STOP:
            return None
        batch = [first]
        while len(batch) < MAX_BATCH:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                self._queue.put(_STOP)
                break
            batch.append(item)
        return batch  # type: ignore[return-value]

    def _run(self) -> None:
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            self._write_with_retry(batch)
            with self._done:
                self._written += len(batch)
                self._pending_ids.difference_update(o.id for o in batch)
                self._done.notify_all()

    def _write_with_retry(self, batch: list[Outcome]) -> None:
        delay = 0.1
        while True:
            try:
                if self._conn is None:
                    self._conn = self.backend.engine.connect()
                self.backend.complete(self._conn, batch)
                return
            except Exception as exc:
                log.warning(
                    "writing %d job outcome(s) failed (%s); retrying in %.1f s",
                    len(batch),
                    describe_error(exc),
                    delay,
                )
                self._close(broken=True)
                if self._stopping.is_set() and delay > 5:
                    log.error(
                        "giving up on %d outcome(s) at shutdown: ids %s", len(batch), [o.id for o in batch]
                    )
                    return
                time.sleep(delay)
                delay = min(delay * 2, 10.0)

    def _close(self, broken: bool = False) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                if broken:
                    conn.invalidate()
                conn.close()
            except Exception:
                log.debug("closing the completer's connection failed", exc_info=True)
