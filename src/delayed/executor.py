"""The executor: one claimed record in, one Outcome out, with the job's events around it.

A job thread calls `Executor.execute(record)`: decode the handler, find the registered class,
run `perform` inside the perform wrappers (tracing) and the `delayed.job.run` event, and
turn what happened into an Outcome: delete on success, retry or fail (delayed.retry) when
perform raised, fail at once when the row cannot be run at all (unknown job, bad handler).
It never raises: even a crash of our own code becomes a failed attempt, so a row is deleted
only after its job ran. The producer (delayed.worker) decides what to claim and when; the
completer writes the outcomes.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from dataclasses import replace
from typing import Any

from . import callbacks, events
from .config import Config
from .errors import HandlerError, MaxRunTimeExceeded, UnknownJobError
from .job import Job
from .priority import JobAlerts, config_alerts
from .record import JobRecord, Outcome
from .registry import lookup
from .results import encode_result, keep_seconds
from .retry import failure_outcome, format_error, job_max_run_time, rule_for

log = logging.getLogger("delayed.worker")

# Context-manager factories entered around each `perform`, outermost first; an exception
# from perform passes through them (tracing records it on its span).
perform_wrappers: list[Callable[[JobRecord, Job], AbstractContextManager[Any]]] = []

JobHook = Callable[[JobRecord, float], None]

# An async job is cancelled on the loop at its max_run_time; what it reports to a supervisor
# (on_job_start) is this much later, so the master's own max_run_time handling (stop the
# child claiming, kill it after the grace) only starts for a job the cancel did not end:
# one that blocks the loop with sync code. Without it the master would recycle the child
# for a job already cancelled and recorded as a failed attempt.
ASYNC_CANCEL_GRACE = 2.0


def ran(result: Any) -> Any:
    """Raise when perform's return shows its work did not run: an un-awaited coroutine.

    Job.__init_subclass__ refuses an `async def` perform (delayed.job.check_perform); this
    catches one that got past it (a plain def returning a coroutine, a perform assigned
    later). The coroutine is closed, never awaited, and the attempt counts as a failure: a
    row is deleted only when its perform ran to completion.
    """
    if inspect.iscoroutine(result):
        result.close()  # never awaited: no "coroutine was never awaited" warning either
    elif not (inspect.isawaitable(result) or inspect.isasyncgen(result)):
        return result
    raise TypeError(
        f"perform returned {result!r} instead of doing the job, and it was never awaited: "
        "declare perform itself `async def` for the worker's event loop to await it"
    )


class Executor:
    """Runs claimed jobs for one worker (`worker_name` is the name its rows are locked by).

    `on_job_start(record, max_run_time)` and `on_job_end(record)` are called in the job's
    thread around perform (the supervisor's child reports running jobs with them).
    """

    def __init__(self, config: Config, worker_name: str, backend_name: str, table_name: str) -> None:
        self.config = config
        self.worker_name = worker_name
        self.backend_name = backend_name
        self.table_name = table_name
        self.on_job_start: JobHook | None = None
        self.on_job_end: Callable[[JobRecord], None] | None = None
        self.succeeded = 0
        self.failed = 0
        self._lock = threading.Lock()
        self._max_run_times: dict[type[Job], float] = {}  # per job class (the config is fixed)
        self._keeps: dict[type[Job], float] = {}  # keep_finished seconds per job class
        self._thresholds = config_alerts(config)

    def execute(self, record: JobRecord) -> Outcome:
        """The outcome of running `record`; never raises."""
        try:
            return self._perform(record)
        except BaseException as exc:  # a bug of ours or a hook: keep the job, log loudly
            return self._crashed(record, exc)

    async def execute_async(self, record: JobRecord) -> Outcome:
        """The outcome of running `record` (an async job) on the worker's event loop.

        Never raises, but for a cancellation from outside (a forced stop): its outcome is
        dropped and its row released, as a sync job's abandoned thread.
        """
        try:
            return await self._perform_async(record)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            return self._crashed(record, exc)

    def _crashed(self, record: JobRecord, exc: BaseException) -> Outcome:
        log.exception("Job runner crashed on job %s", record.id)
        mine = replace(record, locked_by=self.worker_name)
        return failure_outcome(mine, format_error(exc), self.config)

    def max_run_time(self, job_class: type[Job]) -> float:
        """The job class's max_run_time under this config (cached: both are fixed)."""
        seconds = self._max_run_times.get(job_class)
        if seconds is None:
            seconds = self._max_run_times[job_class] = job_max_run_time(job_class, self.config)
        return seconds

    def tags(self, record: JobRecord) -> dict[str, Any]:
        """The payload of a job's events: the row, its alert state and where it ran."""
        return {
            "job": record,
            "alerts": JobAlerts(record, self.config.priority_names, self._thresholds),
            "job_name": record.name,
            "priority": record.priority,
            "queue": record.queue,
            "table": self.table_name,
            "database_adapter": self.backend_name,
            "worker": self.worker_name,
        }

    # -- steps -----------------------------------------------------------------------------
    def _prepare(self, record: JobRecord) -> Job | Outcome:
        """The job instance to run (args, kwargs, record set), or the outcome of a row that cannot run."""
        try:
            payload = record.payload
            job_class = lookup(payload["job"])
        except (HandlerError, UnknownJobError) as exc:
            return self._unrecoverable(record, exc)
        job = job_class()
        job.record, job.id = record, record.id
        job.args, job.kwargs = tuple(payload.get("args", ())), payload.get("kwargs", {})
        return job

    def _succeeded(self, record: JobRecord, job: Job, value: Any) -> Outcome:
        """Delete the row, or keep it with its result when the class or config keeps results."""
        with self._lock:
            self.succeeded += 1
        log.debug("Job %s (id=%s) COMPLETED", record.name, record.id)
        job_class = type(job)
        keep = self._keeps.get(job_class)
        if keep is None:
            keep = self._keeps[job_class] = keep_seconds(job_class, self.config)
        leased = record.concurrency_key is not None
        if keep > 0:
            result = encode_result(value, record.name)
            return Outcome("finish", record.id, self.worker_name, result=result, leased=leased)
        return Outcome("delete", record.id, self.worker_name, leased=leased)

    def _perform(self, record: JobRecord) -> Outcome:
        job = self._prepare(record)
        if isinstance(job, Outcome):
            return job
        if job.is_async:  # not claimed for this lane (a class redefined since the claim)
            return asyncio.run(self._perform_async(record))
        args, kwargs = job.args, job.kwargs
        if self.on_job_start is not None:
            self.on_job_start(record, self.max_run_time(type(job)))
        log.debug("Job %s (id=%s) RUNNING", record.name, record.id)
        try:
            if perform_wrappers or events.has_listeners("delayed.job.run"):
                with ExitStack() as stack:
                    for wrapper in perform_wrappers:
                        stack.enter_context(wrapper(record, job))
                    with events.instrument("delayed.job.run", **self.tags(record)):
                        value = callbacks.run(job, lambda: ran(job.perform(*args, **kwargs)))
            else:  # nothing observes this run: no context managers, no payload dict
                value = callbacks.run(job, lambda: ran(job.perform(*args, **kwargs)))
        except BaseException as exc:
            return self._erroring(record, job, exc)
        finally:
            if self.on_job_end is not None:
                self.on_job_end(record)
        return self._succeeded(record, job, value)

    async def _perform_async(self, record: JobRecord) -> Outcome:
        """As _perform, awaiting perform inside an asyncio timeout of the job's max_run_time."""
        job = self._prepare(record)
        if isinstance(job, Outcome):
            return job
        args, kwargs = job.args, job.kwargs
        max_run_time = self.max_run_time(type(job))
        if self.on_job_start is not None:
            self.on_job_start(record, max_run_time + ASYNC_CANCEL_GRACE)
        log.debug("Job %s (id=%s) RUNNING on the event loop", record.name, record.id)
        try:
            with ExitStack() as stack:
                for wrapper in perform_wrappers:
                    stack.enter_context(wrapper(record, job))
                if events.has_listeners("delayed.job.run"):
                    stack.enter_context(events.instrument("delayed.job.run", **self.tags(record)))
                timeout = asyncio.timeout(max_run_time)
                try:
                    async with timeout:
                        value = await callbacks.run_async(job, lambda: job.perform(*args, **kwargs))
                except TimeoutError as exc:
                    if not timeout.expired():
                        raise  # the job's own TimeoutError
                    raise MaxRunTimeExceeded(
                        f"max_run_time of {max_run_time:g} s exceeded (cancelled on the event loop)"
                    ) from exc
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            return self._erroring(record, job, exc)
        finally:
            if self.on_job_end is not None:
                self.on_job_end(record)
        return self._succeeded(record, job, value)

    def _erroring(self, record: JobRecord, job: Job, exc: BaseException) -> Outcome:
        with self._lock:
            self.failed += 1
        last_error = format_error(exc)
        mine = replace(record, locked_by=self.worker_name)
        outcome = failure_outcome(mine, last_error, self.config, job, error=exc)
        updated = replace(record, attempts=outcome.attempts, last_error=last_error)
        rule = rule_for(type(job), exc)
        if rule is not None and rule.discard:
            log.info(
                "Job %s (id=%s) DISCARDED (discard_on) after %s: %s",
                record.name,
                record.id,
                type(exc).__qualname__,
                exc,
            )
            events.emit("delayed.job.discarded", **self.tags(updated), error=exc)
            return outcome
        if outcome.kind == "retry":
            log.warning(
                "Job %s (id=%s) FAILED (%d prior attempts) with %s: %s",
                record.name,
                record.id,
                record.attempts,
                type(exc).__qualname__,
                exc,
            )
        else:
            log.error(
                "Job %s (id=%s) FAILED permanently because of %d consecutive failures: %s: %s",
                record.name,
                record.id,
                outcome.attempts,
                type(exc).__qualname__,
                exc,
            )
            events.emit("delayed.job.failure", **self.tags(updated), error=exc)
        events.emit("delayed.job.error", **self.tags(updated), error=exc)
        return outcome

    def _unrecoverable(self, record: JobRecord, exc: Exception) -> Outcome:
        """An undecodable handler or unknown job name: fail at once, attempts unchanged."""
        with self._lock:
            self.failed += 1
        last_error = format_error(exc)
        log.error("Job %s (id=%s) FAILED permanently with %s", record.name, record.id, exc)
        updated = replace(record, last_error=last_error)
        events.emit("delayed.job.failure", **self.tags(updated), error=exc)
        kind = "delete" if self.config.destroy_failed_jobs else "fail"
        return Outcome(
            kind,
            record.id,
            self.worker_name,
            attempts=record.attempts,
            last_error=last_error,
            leased=record.concurrency_key is not None,
        )
