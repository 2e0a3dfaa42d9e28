"""How a failure becomes a retry or a failure: the one home of the retry policy.

Used by the executor (a job raised) and by the supervisor's reclaim (a job passed its
max_run_time, or its process died), so both count attempts, schedule retries and decide
when a job has failed for good in exactly the same way.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from .record import JobRecord, Outcome
from .registry import find
from .timeutil import to_seconds, utcnow

if TYPE_CHECKING:  # typing only
    from .config import Config
    from .job import Job


def backoff(now: datetime, attempts: int) -> datetime:
    """When to run again after the `attempts`-th failure: the Ruby gem's n**4 + 5 seconds."""
    return now + timedelta(seconds=attempts**4 + 5)


# ----------------------------------------------------------------------------- rules
POLYNOMIALLY_LONGER = "polynomially_longer"
Wait = float | int | timedelta | str | Callable[[int], float]
T = TypeVar("T", bound=type)


@dataclass(frozen=True)
class Rule:
    """One `retry_on` / `discard_on` declaration: which exceptions, and what they lead to.

    `discard`: the row is deleted, not failed (event delayed.job.discarded). Otherwise a retry
    after `wait` until the job has made `attempts` attempts (every attempt of the job counts,
    whatever it raised: the row keeps one attempt counter), then a failure as usual.
    """

    exceptions: tuple[type[BaseException], ...]
    discard: bool = False
    wait: Wait = POLYNOMIALLY_LONGER
    attempts: int = 5

    def delay(self, attempts: int) -> float:
        """Seconds before the next attempt after the `attempts`-th failure."""
        wait = self.wait
        if wait == POLYNOMIALLY_LONGER:
            return float(attempts**4 + 2)  # ActiveJob's :polynomially_longer, without jitter
        if callable(wait):
            return float(wait(attempts))
        return to_seconds(wait)  # type: ignore[arg-type]


def _exception_types(exceptions: tuple[Any, ...], where: str) -> tuple[type[BaseException], ...]:
    if not exceptions or not all(isinstance(e, type) and issubclass(e, BaseException) for e in exceptions):
        raise TypeError(f"{where} takes one or more exception classes, got {exceptions!r}")
    return exceptions


def _add_rule(rule: Rule) -> Callable[[T], T]:
    def decorate(cls: T) -> T:
        own = cls.__dict__.get("_delayed_rules", ())
        # Decorators apply bottom-up: putting each in front keeps the written (top-down) order.
        cls._delayed_rules = (rule, *own)  # type: ignore[attr-defined]
        return cls

    return decorate


def retry_on(
    *exceptions: type[BaseException], wait: Wait = POLYNOMIALLY_LONGER, attempts: int = 5
) -> Callable[[T], T]:
    """Class decorator: retry the job on these exceptions with its own back-off and attempt limit.

    `wait`: seconds, a timedelta, a duration text ("30s", "5m"), a callable(attempts) ->
    seconds, or "polynomially_longer" (attempts**4 + 2 s, the default). `attempts`: the job's
    attempts (of any error) after which this error fails it as usual (max_attempts does not
    apply to it). Rules are checked top to bottom, the class's before its parents'.
    """
    types = _exception_types(exceptions, "retry_on()")
    if not isinstance(attempts, int) or attempts < 1:
        raise ValueError(f"retry_on(attempts={attempts!r}): give an integer >= 1")
    rule = Rule(types, wait=wait, attempts=attempts)
    rule.delay(1)  # a bad wait fails at class definition, not in a worker
    return _add_rule(rule)


def discard_on(*exceptions: type[BaseException]) -> Callable[[T], T]:
    """Class decorator: on these exceptions the job is dropped (row deleted), never retried or failed."""
    return _add_rule(Rule(_exception_types(exceptions, "discard_on()"), discard=True))


def rule_for(job_class: type | None, error: BaseException | None) -> Rule | None:
    """The first rule of `job_class` (then of its bases) matching `error`, or None."""
    if job_class is None or error is None:
        return None
    for klass in job_class.__mro__:
        for rule in klass.__dict__.get("_delayed_rules", ()):
            if isinstance(error, rule.exceptions):
                return rule
    return None


# The longest last_error kept, in characters. Long enough for the message and ~100 frames of
# traceback (a frame is two lines, ~150 characters); short enough that a row stays cheap to
# send in a batch of outcomes, to store on every retry and to read in `delayed jobs show`,
# and (4 bytes a character at most) under 64 KiB even if a column were a MySQL TEXT.
LAST_ERROR_LIMIT = 16_000
# The first line (`Class: message`) keeps at most this much of the budget; the rest goes to
# the traceback's tail, where the innermost frames and the exception line are.
LAST_ERROR_HEAD_LIMIT = 1_000
# NUL (PostgreSQL refuses it in text) and lone surrogates (no UTF-8 encoding: the drivers of
# PostgreSQL, MySQL and SQLite refuse them), e.g. from bytes decoded with surrogateescape.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def format_error(exc: BaseException) -> str:
    """`Class: message` then the traceback: what last_error holds, always storable.

    Every last_error is made here, so this is where it is made safe for every database: see
    `clean_error`. Never raises, even for an exception whose __str__ does.
    """
    try:
        message = str(exc)
    except Exception:
        message = f"<{type(exc).__name__}.__str__ failed>"
    head = f"{type(exc).__qualname__}: {message}"
    body = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return clean_error(f"{head}\n{body}")


def clean_error(text: str, limit: int = LAST_ERROR_LIMIT) -> str:
    """`text` with NUL and lone surrogates escaped (`\\x00`, `\\udcff`), cut to `limit` characters.

    A cut keeps the first line (up to LAST_ERROR_HEAD_LIMIT) and the end of the rest, where a
    traceback names the innermost frame and the exception, with a marker saying how much
    went. Without this one bad message made its whole batch of outcomes fail for ever.
    """
    text = _UNSTORABLE.sub(_escape, text)
    if len(text) <= limit:
        return text
    whole_first, _, rest = text.partition("\n")
    first = whole_first[: min(LAST_ERROR_HEAD_LIMIT, limit // 2)]
    marker = "\n[... {} characters cut ...]\n"
    budget = max(limit - len(first) - len(marker.format(len(text))), 0)
    tail = rest[len(rest) - budget :] if budget else ""
    newline = tail.find("\n", 0, 200)
    if 0 <= newline < len(tail) - 1:
        tail = tail[newline + 1 :]  # start at a whole line when one starts near the cut
    cut = len(whole_first) - len(first) + len(rest) - len(tail)
    return first + marker.format(cut) + tail


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return "\\x00" if char == "\x00" else f"\\u{ord(char):04x}"


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
    error: BaseException | None = None,
) -> Outcome:
    """The outcome of a failed attempt: retry with back-off, or fail at max_attempts.

    `job` is the instance that ran (its class's settings and `reschedule_at` apply); without
    it the class is looked up by the row's name, and an unknown name gets the defaults.
    `error`, what perform raised, may match one of the class's `retry_on` / `discard_on`
    rules: a discard deletes the row (attempts counted), a retry rule's own wait and attempt
    limit replace the class's.
    """
    now = utcnow() if now is None else now
    attempts = record.attempts + 1
    job_class = type(job) if job is not None else find(record.name)
    locked_by = record.locked_by or ""
    leased = record.concurrency_key is not None
    rule = rule_for(job_class, error)
    if rule is not None and rule.discard:
        return Outcome(
            "delete", record.id, locked_by, attempts=attempts, last_error=last_error, leased=leased
        )
    if rule is not None:
        max_attempts = rule.attempts
    else:
        max_attempts = (job_class.max_attempts if job_class else None) or config.max_attempts
    if attempts >= max_attempts:
        destroy = job_class.destroy_failed_jobs if job_class else None
        if destroy is None:
            destroy = config.destroy_failed_jobs
        kind = "delete" if destroy else "fail"
        unique = job_class.unique if job_class else None
        return Outcome(
            kind,
            record.id,
            locked_by,
            attempts=attempts,
            last_error=last_error,
            hold_unique_key=bool(unique is not None and unique.failed_holds_key),
            leased=leased,
        )
    if rule is not None:
        run_at = now + timedelta(seconds=rule.delay(attempts))
        return Outcome(
            "retry",
            record.id,
            locked_by,
            attempts=attempts,
            run_at=run_at,
            last_error=last_error,
            leased=leased,
        )
    if job is None and job_class is not None:
        job = job_class()
    run_at = job.reschedule_at(now, attempts) if job is not None else backoff(now, attempts)
    return Outcome(
        "retry", record.id, locked_by, attempts=attempts, run_at=run_at, last_error=last_error, leased=leased
    )
