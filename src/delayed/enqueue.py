"""Enqueue: from `perform_later(...)` to a row in delayed_jobs.

A job row's handler is JSON, never pickle:
`{"job": <registered name>, "args": [...], "kwargs": {...}, "job_id": <uuid>, "enqueued_at": <iso>}`
plus whatever enqueue extensions add (tracing writes "trace"). Arguments that would not come
back unchanged from JSON are refused here, at enqueue, naming the argument.

Enqueue joins the caller's transaction when given `using=` (a SQLAlchemy Connection or
Session, or a psycopg Connection): a rollback leaves no job, and no worker sees the job
before commit. Without `using=` the jobs are committed at once on the configured database.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from . import callbacks, events
from . import config as _config
from .backends import backend_for, insert_rows
from .concurrency import check_limit, resolve_key
from .db import describe_error, get_engine, redact
from .errors import EnqueueError, SerializationError
from .priority import resolve as resolve_priority
from .record import EnqueueResult
from .schema import get_table
from .timeutil import to_naive_utc, to_seconds, utcnow
from .unique import check_explicit_key

if TYPE_CHECKING:  # typing only: job.py imports this module
    from .job import Job

# Callables that may add keys to a handler dict just before it is stored (tracing uses this).
enqueue_extensions: list[Callable[[dict[str, Any], EnqueueRequest], None]] = []
# Context-manager factories entered around building and inserting one `enqueue_many` batch,
# outermost first, so a span can cover the insert (tracing's PRODUCER spans); an exception
# from the insert passes through them. Empty: no cost beyond this list's truth test.
enqueue_wrappers: list[Callable[[list[EnqueueRequest]], AbstractContextManager[Any]]] = []


# ----------------------------------------------------------------------------- JSON check
_PLAIN = frozenset({str, int, bool, type(None)})  # exact types that always round-trip


def _json_problem(value: Any, depth: int = 0) -> str | None:
    """Why `value` would not survive a JSON round trip unchanged, or None when it would."""
    if depth > 100:
        return "it is nested more than 100 levels deep"
    if type(value) in _PLAIN:  # the common case first: one set lookup, no isinstance chain
        return None
    if value is None or isinstance(value, str | bool | int):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{value!r} is not a finite number"
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            problem = _json_problem(item, depth + 1)
            if problem:
                return f"[{index}]: {problem}"
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"has the non-string key {key!r}"
            problem = _json_problem(item, depth + 1)
            if problem:
                return f"[{key!r}]: {problem}"
        return None
    return f"{type(value).__module__}.{type(value).__qualname__} is not JSON"


def check_arguments(job_name: str, args: Sequence[Any], kwargs: dict[str, Any]) -> None:
    if not args and not kwargs:
        return
    for index, value in enumerate(args):
        problem = _json_problem(value)
        if problem:
            raise SerializationError(
                f"{job_name}: positional argument {index} cannot be stored as JSON: {problem}. "
                "Pass plain values (str, int, float, bool, None, lists, dicts with str keys), "
                "e.g. a record's id instead of the record; pydelayed never pickles."
            )
    for key, value in kwargs.items():
        problem = _json_problem(value)
        if problem:
            raise SerializationError(
                f"{job_name}: keyword argument {key!r} cannot be stored as JSON: {problem}. "
                "Pass plain values (str, int, float, bool, None, lists, dicts with str keys), "
                "e.g. a record's id instead of the record; pydelayed never pickles."
            )


# ----------------------------------------------------------------------------- options
@dataclass(frozen=True)
class EnqueueOptions:
    """What `Job.set(...)` carries: each None means "the class's or the config's default"."""

    priority: int | str | None = None
    queue: str | None = None
    run_at: datetime | None = None
    wait: float | None = None
    using: Any = None
    unique_key: str | None = None
    concurrency_key: Any = None
    concurrency_limit: int | None = None


@dataclass
class EnqueueRequest:
    """A job ready to insert: its class, arguments and resolved row values."""

    job_class: type[Job]
    args: list[Any]
    kwargs: dict[str, Any]
    priority: int
    queue: str | None
    run_at: datetime
    job_id: str
    enqueued_at: datetime
    unique_key: str | None = None
    concurrency_key: str | None = None
    concurrency_limit: int | None = None

    def handler(self) -> str:
        if not enqueue_extensions:
            # The same text json.dumps(body) gives, without building and walking the dict:
            # job_id (hex and dashes) and the ISO timestamp never need escaping.
            args = "[]" if not self.args else _encode(self.args)
            kwargs = "{}" if not self.kwargs else _encode(self.kwargs)
            return (
                f'{{"job":{_encode(self.job_class.job_name)},"args":{args},"kwargs":{kwargs},'
                f'"job_id":"{self.job_id}","enqueued_at":"{self.enqueued_at.isoformat()}"}}'
            )
        body: dict[str, Any] = {
            "job": self.job_class.job_name,
            "args": self.args,
            "kwargs": self.kwargs,
            "job_id": self.job_id,
            "enqueued_at": self.enqueued_at.isoformat(),
        }
        for extension in enqueue_extensions:
            extension(body, self)
        return _encode(body)

    def row(self) -> dict[str, Any]:
        """Column values for the insert."""
        return {
            "priority": self.priority,
            "attempts": 0,
            "handler": self.handler(),
            "run_at": self.run_at,
            "queue": self.queue,
            "name": self.job_class.job_name,
            "created_at": self.enqueued_at,
            "updated_at": self.enqueued_at,
            "unique_key": self.unique_key,
            "concurrency_key": self.concurrency_key,
            "concurrency_limit": self.concurrency_limit,
        }


# json.dumps(value, separators=(",", ":"), allow_nan=False), without a new encoder per call.
_encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


def _uuid4() -> str:
    """str(uuid.uuid4()) in a third of the time: 16 random bytes, version and variant bits set."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class ConfiguredJob:
    """What `Job.set(...)` returns: the same `perform_later`/`build`, with options applied."""

    def __init__(self, job_class: type[Job], options: EnqueueOptions) -> None:
        self.job_class = job_class
        self.options = options

    def set(self, **options: Any) -> ConfiguredJob:
        return ConfiguredJob(self.job_class, merge_options(self.options, options))

    def build(self, *args: Any, **kwargs: Any) -> EnqueueRequest:
        return build(self.job_class, self.options, args, kwargs)

    def perform_later(self, *args: Any, **kwargs: Any) -> int | None:
        """Insert the job; returns its id (the existing row's when a unique job is a
        duplicate), or None when an enqueue callback aborted it."""
        return enqueue_one(self.build(*args, **kwargs), using=self.options.using)


_OPTION_NAMES = frozenset(
    {"priority", "queue", "wait", "wait_until", "using", "unique_key", "concurrency_key", "concurrency_limit"}
)


def merge_options(base: EnqueueOptions, options: dict[str, Any]) -> EnqueueOptions:
    unknown = set(options) - _OPTION_NAMES
    if unknown:
        raise TypeError(
            f"set() got unknown option(s) {sorted(unknown)}; "
            "use priority=, queue=, wait=, wait_until=, using=, unique_key=, concurrency_key= "
            "or concurrency_limit="
        )
    changes: dict[str, Any] = {}
    if options.get("unique_key") is not None:
        changes["unique_key"] = check_explicit_key(options["unique_key"])
    if options.get("concurrency_key") is not None:
        changes["concurrency_key"] = options["concurrency_key"]
    if options.get("concurrency_limit") is not None:
        changes["concurrency_limit"] = check_limit("set()", options["concurrency_limit"])
    if "priority" in options:
        changes["priority"] = options["priority"]
    if "queue" in options:
        changes["queue"] = options["queue"]
    if "using" in options:
        changes["using"] = options["using"]
    if options.get("wait") is not None and options.get("wait_until") is not None:
        raise TypeError("set() takes wait= or wait_until=, not both")
    if options.get("wait") is not None:
        try:
            changes["wait"] = to_seconds(options["wait"])
        except ValueError as exc:
            raise ValueError(f"set(wait=...): {exc}") from None
        changes["run_at"] = None
    if options.get("wait_until") is not None:
        when = options["wait_until"]
        if not isinstance(when, datetime):
            raise TypeError(f"set(wait_until=...) takes a datetime, got {when!r}")
        changes["run_at"] = to_naive_utc(when)
        changes["wait"] = None
    return replace(base, **changes)


def build(
    job_class: type[Job], options: EnqueueOptions, args: Sequence[Any], kwargs: dict[str, Any]
) -> EnqueueRequest:
    config = _config.get_config()
    check_arguments(job_class.job_name, args, kwargs)
    now = _utcnow()
    priority_value = options.priority
    if priority_value is None:
        priority_value = job_class.priority
        if priority_value is None:
            priority_value = config.default_priority
    if type(priority_value) is not int:
        priority_value = resolve_priority(priority_value, config.priority_names)
    queue = options.queue if options.queue is not None else job_class.queue
    if queue is None:
        queue = config.default_queue_name
    if options.run_at is not None:
        run_at = options.run_at
    elif options.wait:
        run_at = now + timedelta(seconds=options.wait)
    else:
        run_at = now
    request = EnqueueRequest(
        job_class, list(args), dict(kwargs), priority_value, queue, run_at, _uuid4(), now
    )
    if options.unique_key is not None:
        request.unique_key = options.unique_key
    elif job_class.unique is not None:
        request.unique_key = job_class.unique.key(job_class, args, kwargs, queue, run_at)
    key = options.concurrency_key if options.concurrency_key is not None else job_class.concurrency_key
    if key is not None:
        request.concurrency_key = resolve_key(job_class.job_name, key, args, kwargs)
        if request.concurrency_key is not None:
            limit = options.concurrency_limit or job_class.concurrency_limit or 1
            request.concurrency_limit = limit
    return request


# timeutil.utcnow's naive UTC "now", at a tenth of the cost where datetime.utcnow() is not
# deprecated (it is from 3.12 on, where timeutil's form is used).
_utcnow = datetime.utcnow if sys.version_info < (3, 12) else utcnow
NO_OPTIONS = EnqueueOptions()  # frozen: one shared instance for build()/perform_later()


# ----------------------------------------------------------------------------- enqueue
def enqueue_many(requests: Iterable[EnqueueRequest], using: Any = None) -> EnqueueResult:
    """Insert many jobs in one statement (per 1,000 rows); returns their ids in order.

    The answer is a list of ids as before (an EnqueueResult): for a unique job whose key was
    taken (by a queued or running row, or an earlier item of the batch) nothing is inserted,
    its id is the existing row's and `result.duplicates[i]` is True.

    No enqueue callbacks run here (as ActiveJob's perform_all_later); `perform_later` runs them.

    `using`: a SQLAlchemy Connection or Session, or a psycopg Connection, to join its
    transaction; without it the jobs are committed at once on the configured database.
    """
    batch = list(requests)
    if not batch:
        return EnqueueResult()
    if enqueue_wrappers:
        with ExitStack() as stack:
            for wrapper in list(enqueue_wrappers):
                stack.enter_context(wrapper(batch))
            return _insert_batch(batch, using)
    return _insert_batch(batch, using)


def enqueue_one(request: EnqueueRequest, using: Any = None) -> int | None:
    """Insert one job inside its class's enqueue callbacks (delayed.callbacks).

    The callbacks get a job instance with `args`, `kwargs` and `request` (whose priority,
    queue and run_at they may still change) and, after the insert, `id`. Returns the new
    row's id, or None when a callback aborted the enqueue (AbortEnqueue).
    """
    job_class = request.job_class
    if not job_class._delayed_callbacks.enqueue_any:
        return enqueue_many([request], using)[0]
    job = job_class()
    job.args, job.kwargs, job.request = tuple(request.args), request.kwargs, request

    def insert() -> int:
        job.id = enqueue_many([request], using)[0]
        return job.id

    return callbacks.enqueue(job, insert)


def _insert_batch(batch: list[EnqueueRequest], using: Any) -> EnqueueResult:
    table = get_table(_config.get_config().table_name)
    rows = [request.row() for request in batch]
    jobs = [request.job_class.job_name for request in batch]
    with events.instrument("delayed.job.enqueue", jobs=jobs, count=len(rows)) as payload:
        try:
            if using is None:
                ids = backend_for(get_engine(), table).insert_now(rows)
            else:
                ids = insert_rows(rows, table, using)
        except sa.exc.DBAPIError as exc:
            if using is not None:
                raise  # the caller's own transaction: let its error handling see the original
            raise _enqueue_error(jobs, exc) from exc
        if not isinstance(ids, EnqueueResult):
            ids = EnqueueResult(ids)
        payload["ids"] = ids
        payload["duplicates"] = ids.duplicates
        payload["duplicate"] = any(ids.duplicates)
    return ids


def _enqueue_error(jobs: list[str], exc: sa.exc.DBAPIError) -> EnqueueError:
    names = ", ".join(sorted(set(jobs)))
    return EnqueueError(
        f"could not enqueue {len(jobs)} job(s) ({names}) on {redact(_config.get_config().database_url)}: "
        f"{describe_error(exc)}. No job was stored; check that the database is reachable and that "
        "`delayed migrate` has created the jobs table."
    )
