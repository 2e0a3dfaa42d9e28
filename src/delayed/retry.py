"""How a failure becomes a retry or a failure: the one home of the retry policy.

Used by the executor (a job raised) and by the supervisor's reclaim (a job passed its
max_run_time, or its process died), so both count attempts, schedule retries and decide
when a job has failed for good in exactly the same way.
"""

from __future__ import annotations

import traceback
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from .record import JobRecord, Outcome
from .registry import find
from .timeutil import to_seconds, utcnow

if TYPE_CHECKING:  # typing only
    from .config import Config
    from .job import Job


def backoff(now: datetime, attempts: int) -> datetime:
    """When to run again after the `attempts`-th failure: the Ruby gem's n**4 + 5 seconds."""
    return now + timedelta(seconds=attempts**4 + 5)


def format_error(exc: BaseException) -> str:
    """`Class: message` then the traceback: what last_error holds."""
    head = f"{type(exc).__qualname__}: {exc}"
    body = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return f"{head}\n{body}"


def job_max_run_time(job_class: type[Job] | None, config: Config) -> float:
    """A job's own max_run_time, capped at the global one (the lock timeout depends on it)."""
    if job_class is not None and job_class.max_run_time is not None:
        return min(to_seconds(job_class.max_run_time), config.max_run_time)
    return float(config.max_run_time)


def failure_outcome(
    record: JobRecord,
    last_error: str,
    config: Config,
    job: Job | None = None,
    now: datetime | None = None,
) -> Outcome:
    """The outcome of a failed attempt: retry with back-off, or fail at max_attempts.

    `job` is the instance that ran (its class's settings and `reschedule_at` apply); without
    it the class is looked up by the row's name, and an unknown name gets the defaults.
    """
    now = utcnow() if now is None else now
    attempts = record.attempts + 1
    job_class = type(job) if job is not None else find(record.name)
    max_attempts = (job_class.max_attempts if job_class else None) or config.max_attempts
    locked_by = record.locked_by or ""
    if attempts >= max_attempts:
        destroy = job_class.destroy_failed_jobs if job_class else None
        if destroy is None:
            destroy = config.destroy_failed_jobs
        kind = "delete" if destroy else "fail"
        return Outcome(kind, record.id, locked_by, attempts=attempts, last_error=last_error)
    if job is None and job_class is not None:
        job = job_class()
    run_at = job.reschedule_at(now, attempts) if job is not None else backoff(now, attempts)
    return Outcome("retry", record.id, locked_by, attempts=attempts, run_at=run_at, last_error=last_error)
