"""Writes job outcomes to the table in batches, off the job threads.

A job thread hands its outcome over and is free for the next job at once; this thread takes
everything queued so far and writes it in one transaction. Under load batches grow by
themselves; when idle an outcome is written as soon as it arrives (no timer). If the write
fails (lost connection), the batch is kept and retried with back-off: no outcome is dropped
while the process lives, and a row whose outcome never lands stays locked, so it runs again
after the lock timeout (at least once).

A batch the database refuses for its data (a value it cannot store or a driver cannot
encode: not a lost connection) is written again row by row, so one bad row never holds back
the others; a row still refused is written with a plain-ASCII last_error instead. The queue
is bounded: past `max_pending` unwritten outcomes `full` is true and the worker claims
nothing more until the backlog is written (job threads never block on it, nothing is
dropped).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import replace

import sqlalchemy as sa

from .backends import Backend, Outcome
from .db import describe_error
from .retry import backoff, clean_error
from .timeutil import utcnow

log = logging.getLogger("delayed.completer")

_STOP = object()
MAX_BATCH = 1000
# Unwritten outcomes past which the worker stops claiming (each is a row whose job ran but
# which is still locked: a crash now would run it again). A batch writes up to MAX_BATCH.
MAX_PENDING = 2 * MAX_BATCH
FALLBACK_ERROR_LIMIT = 4_000  # characters of the plain-ASCII last_error of a refused row


def is_data_error(exc: BaseException) -> bool:
    """True when the database or its driver refused a value, not the connection.

    Such an error belongs to one row of a batch (retrying the batch fails again for ever);
    a lost or refused connection belongs to all of them (retrying later is right).
    """
    if isinstance(exc, sa.exc.DBAPIError):
        return not exc.connection_invalidated and isinstance(exc, sa.exc.DataError | sa.exc.IntegrityError)
    if isinstance(exc, sa.exc.StatementError):  # raised before the statement reached the server
        exc = exc.orig
    return isinstance(exc, UnicodeError | ValueError | TypeError)


def fallbacks(outcome: Outcome) -> Iterator[Outcome]:
    """What to write for a row the database refused: simpler and simpler versions of it.

    First a plain-ASCII last_error (every character outside ASCII escaped, shortened), then
    a last_error that only says it could not be stored, with the default back-off run_at (in
    case run_at was the bad value). A delete has nothing to simplify.
    """
    if outcome.kind == "delete":
        return
    if outcome.kind == "finish":  # a kept result the database refused: keep the row without it
        yield replace(outcome, result=None)
        return
    text = outcome.last_error or ""
    ascii_text = text.encode("ascii", "backslashreplace").decode("ascii").replace("\x00", "\\x00")
    yield replace(outcome, last_error=clean_error(ascii_text, FALLBACK_ERROR_LIMIT))
    note = "the error of this attempt could not be stored (the database refused its text)"
    run_at = backoff(utcnow(), outcome.attempts) if outcome.kind == "retry" else outcome.run_at
    yield replace(outcome, last_error=note, run_at=run_at)


class Completer:
    def __init__(self, backend: Backend, max_pending: int = MAX_PENDING) -> None:
        self.backend = backend
        self.max_pending = max_pending
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._done = threading.Condition()
        self._submitted = 0
        self._written = 0
        self._pending_ids: set[int] = set()
        self._stopping = threading.Event()
        self._closed = False  # stop() queued _STOP: put() refuses what would come after it
        self._thread = threading.Thread(target=self._run, name="delayed-completer", daemon=True)
        self._conn = None

    def start(self) -> Completer:
        self._thread.start()
        return self

    def put(self, outcome: Outcome) -> bool:
        """Queue `outcome` to be written; False once `stop` has closed the queue.

        An outcome refused so is never written: its row stays locked by this worker, and
        the worker releases it with the other rows it still holds.
        """
        with self._done:
            if self._closed:
                return False
            self._submitted += 1
            self._pending_ids.add(outcome.id)
            self._queue.put(outcome)  # under the lock: every accepted outcome is ahead of _STOP
        return True

    def pending_ids(self) -> set[int]:
        """Ids whose outcome is queued but not yet written (their rows are still locked)."""
        with self._done:
            return set(self._pending_ids)

    @property
    def pending(self) -> int:
        with self._done:
            return self._submitted - self._written

    @property
    def full(self) -> bool:
        """Too many outcomes wait to be written: claim nothing more until `wait_for_room`."""
        with self._done:
            return self._submitted - self._written >= self.max_pending

    def wait_for_room(self, timeout: float) -> bool:
        """Wait (at most `timeout`) until the backlog is below max_pending; True when it is."""
        with self._done:
            return self._done.wait_for(lambda: self._submitted - self._written < self.max_pending, timeout)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything put so far is written; False on timeout."""
        with self._done:
            target = self._submitted
            return self._done.wait_for(lambda: self._written >= target, timeout)

    def stop(self, timeout: float = 30.0) -> bool:
        """Write what is queued (retrying for up to `timeout`), then end the thread.

        True when every outcome was written and the thread has ended. The connection is the
        thread's alone: the thread closes it as it ends. A stop that times out while the
        thread is still inside a write (a database that stopped answering) leaves it to
        finish or fail on its own, rather than closing the connection under it; a failed
        write then gives up at once instead of backing off.
        """
        deadline = time.monotonic() + timeout
        flushed = self.flush(timeout)
        self._stopping.set()  # also cuts a back-off sleep short
        with self._done:
            self._closed = True
            self._queue.put(_STOP)
        self._thread.join(max(0.0, deadline - time.monotonic()) + 1.0)
        if not flushed:
            log.error(
                "%d job outcome(s) could not be written before exit; those rows stay locked "
                "and run again after the lock timeout",
                self.pending,
            )
        if self._thread.is_alive():
            log.error("the completer is still inside a database call; leaving it to end on its own")
            return False
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
        try:
            while True:
                batch = self._take_batch()
                if batch is None:
                    return
                self._write_with_retry(batch)
                with self._done:
                    self._written += len(batch)
                    self._pending_ids.difference_update(o.id for o in batch)
                    self._done.notify_all()
        finally:
            self._close()  # only this thread ever uses (or closes) its connection

    def _write_with_retry(self, batch: list[Outcome]) -> None:
        unwritten = list(batch)  # _write removes what it wrote, so a retry writes only the rest
        delay = 0.1
        while True:
            try:
                self._write(unwritten)
                return
            except Exception as exc:
                log.warning(
                    "writing %d job outcome(s) failed (%s); retrying in %.1f s",
                    len(unwritten),
                    describe_error(exc),
                    delay,
                )
                self._close(broken=True)
                if self._stopping.is_set():  # stop() has waited its timeout already
                    log.error(
                        "giving up on %d outcome(s) at shutdown: ids %s",
                        len(unwritten),
                        [o.id for o in unwritten],
                    )
                    return
                self._stopping.wait(delay)  # a stop ends the wait: one last try, then give up
                delay = min(delay * 2, 10.0)

    def _connection(self) -> sa.Connection:
        if self._conn is None:
            self._conn = self.backend.write_connection()
        return self._conn

    def _write(self, unwritten: list[Outcome]) -> None:
        """Write `unwritten` in one transaction, or row by row when the batch's data is refused.

        Raises (leaving in `unwritten` what is not written yet) when the connection fails.
        """
        conn = self._connection()
        try:
            self.backend.complete(conn, unwritten)
        except Exception as exc:
            if not is_data_error(exc):
                raise
            self._rollback(conn)
            log.warning(
                "the database refused a batch of %d job outcome(s) (%s); writing them one by one",
                len(unwritten),
                describe_error(exc),
            )
        else:
            unwritten.clear()
            return
        while unwritten:
            self._write_one(conn, unwritten[0])
            del unwritten[0]

    def _write_one(self, conn: sa.Connection, outcome: Outcome) -> None:
        """Write one outcome, falling back to simpler versions while its data is refused."""
        error: BaseException | None = None
        for attempt in (outcome, *fallbacks(outcome)):
            try:
                self.backend.complete(conn, [attempt])
            except Exception as exc:
                if not is_data_error(exc):
                    raise
                self._rollback(conn)
                error = exc
                continue
            if attempt is not outcome:
                log.warning(
                    "job %s: the database refused its outcome (%s); wrote it with a simpler last_error",
                    outcome.id,
                    describe_error(error) if error else "?",
                )
            return
        log.error(
            "job %s: the database refuses every form of its %s outcome (%s); its row stays locked "
            "and the job runs again after the lock timeout",
            outcome.id,
            outcome.kind,
            describe_error(error) if error else "?",
        )

    @staticmethod
    def _rollback(conn: sa.Connection) -> None:
        if conn.in_transaction():
            conn.rollback()

    def _close(self, broken: bool = False) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                if broken:
                    conn.invalidate()
                conn.close()
            except Exception:
                log.debug("closing the completer's connection failed", exc_info=True)
