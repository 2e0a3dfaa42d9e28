"""The job API: `Job` classes, the registry, `set(...)`, `perform_later`, `enqueue_many`.

A job row's handler is JSON, never pickle:
`{"job": <registered name>, "args": [...], "kwargs": {...}, "job_id": <uuid>, "enqueued_at": <iso>}`
plus whatever enqueue extensions add (tracing writes "trace"). Only classes in the registry
run; a name that is not there fails its row with a clear last_error.

Enqueue joins the caller's transaction when given `using=` (a SQLAlchemy Connection or
Session, or a psycopg Connection): a rollback leaves no job, and no worker sees the job
before commit.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import sqlalchemy as sa

from . import config as _config
from . import events
from .errors import EnqueueError, HandlerError, SerializationError, UnknownJobError
from .priority import resolve as resolve_priority
from .timeutil import to_naive_utc, to_seconds, utcnow

_registry: dict[str, type[Job]] = {}

# Callables that may add keys to a handler dict just before it is stored (tracing uses this).
enqueue_extensions: list[Callable[[dict[str, Any], EnqueueRequest], None]] = []
# Context-manager factories entered around each `perform` in the worker, outermost first;
# an exception from perform passes through them (tracing records it on its span).
perform_wrappers: list[Callable[[JobRecord, Job], AbstractContextManager[Any]]] = []
# Context-manager factories entered around building and inserting one `enqueue_many` batch,
# outermost first, so a span can cover the insert (tracing's PRODUCER spans); an exception
# from the insert passes through them. Empty: no cost beyond this list's truth test.
enqueue_wrappers: list[Callable[[list[EnqueueRequest]], AbstractContextManager[Any]]] = []


def registered_jobs() -> dict[str, type[Job]]:
    """A copy of the registry: registered name -> class."""
    return dict(_registry)


def lookup(name: str) -> type[Job]:
    """The job class registered as `name`, or UnknownJobError saying how to register it."""
    try:
        return _registry[name]
    except KeyError:
        raise UnknownJobError(
            f"no job class is registered as {name!r}; import the module that defines it "
            "(add it to `require` in [delayed] or pass --require)"
        ) from None


@dataclass
class JobRecord:
    """One row of delayed_jobs, as a worker or an event subscriber sees it."""

    id: int
    priority: int
    attempts: int
    handler: str
    name: str
    run_at: datetime
    queue: str | None = None
    last_error: str | None = None
    locked_at: datetime | None = None
    locked_by: str | None = None
    failed_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    _payload: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_mapping(cls, row: Any) -> JobRecord:
        """Build from a result row mapping (column name -> value)."""
        return cls(
            id=row["id"],
            priority=row["priority"],
            attempts=row["attempts"],
            handler=row["handler"],
            name=row["name"],
            run_at=row["run_at"],
            queue=row["queue"],
            last_error=row["last_error"],
            locked_at=row["locked_at"],
            locked_by=row["locked_by"],
            failed_at=row["failed_at"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )

    @property
    def payload(self) -> dict[str, Any]:
        """The decoded handler; HandlerError when it is not pydelayed's JSON."""
        if self._payload is None:
            self._payload = decode_handler(self.handler)
        return self._payload

    @property
    def job_id(self) -> str | None:
        """The job's uuid from its handler (stable across retries)."""
        try:
            return self.payload.get("job_id")
        except HandlerError:
            return None

    # -- alerts (Ruby's Delayed::Job#age_alert? and friends); computed on access only ------
    @property
    def priority_name(self) -> str | None:
        """The configured name of this row's priority range (None below the lowest bound)."""
        from .config import get_config
        from .priority import name_of

        return name_of(self.priority, get_config().priority_names)

    @property
    def age(self) -> float:
        """Seconds spent waiting: from run_at to pickup (or to now while waiting), never < 0."""
        end = self.locked_at if self.locked_at is not None else utcnow()
        return max((end - self.run_at).total_seconds(), 0.0)

    @property
    def run_time(self) -> float | None:
        """Seconds since the job was locked (picked up); None when it is not locked."""
        if self.locked_at is None:
            return None
        return (utcnow() - self.locked_at).total_seconds()

    def _alert(self, key: str) -> float | int | None:
        job_class = _registry.get(self.name)
        own = getattr(job_class, f"alert_{key}", None) if job_class is not None else None
        if own is not None:
            return own if key == "attempts" else to_seconds(own)
        from .priority import Priority

        return getattr(Priority(self.priority), f"alert_{key}")

    @property
    def alert_age(self) -> float | None:
        """The job class's `alert_age`, else its priority's threshold, else None."""
        return self._alert("age")  # type: ignore[return-value]

    @property
    def alert_run_time(self) -> float | None:
        """The job class's `alert_run_time`, else its priority's threshold, else None."""
        return self._alert("run_time")  # type: ignore[return-value]

    @property
    def alert_attempts(self) -> int | None:
        """The job class's `alert_attempts`, else its priority's threshold, else None."""
        return self._alert("attempts")  # type: ignore[return-value]

    @property
    def age_alert(self) -> bool | None:
        """True when the job waited at least `alert_age`; None without a threshold."""
        threshold = self.alert_age
        return None if threshold is None else threshold <= self.age

    @property
    def run_time_alert(self) -> bool | None:
        """True when the job has run at least `alert_run_time`; None without a threshold or lock."""
        threshold, run_time = self.alert_run_time, self.run_time
        return None if threshold is None or run_time is None else threshold <= run_time

    @property
    def attempts_alert(self) -> bool | None:
        """True when the job has at least `alert_attempts` attempts; None without a threshold."""
        threshold = self.alert_attempts
        return None if threshold is None else threshold <= self.attempts


def decode_handler(handler: str) -> dict[str, Any]:
    """Parse and check a handler; the error says what is wrong with it."""
    try:
        payload = json.loads(handler)
    except (TypeError, ValueError) as exc:
        raise HandlerError(f"handler is not JSON ({exc}): {handler[:200]!r}") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("job"), str):
        raise HandlerError(f'handler has no "job" name: {handler[:200]!r}')
    if not isinstance(payload.get("args", []), list) or not isinstance(payload.get("kwargs", {}), dict):
        raise HandlerError(f"handler's args must be a list and kwargs an object: {handler[:200]!r}")
    return payload


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


def _check_arguments(job_name: str, args: Sequence[Any], kwargs: dict[str, Any]) -> None:
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
        return ConfiguredJob(self.job_class, _merge_options(self.options, options))

    def build(self, *args: Any, **kwargs: Any) -> EnqueueRequest:
        return _build(self.job_class, self.options, args, kwargs)

    def perform_later(self, *args: Any, **kwargs: Any) -> int:
        request = self.build(*args, **kwargs)
        return enqueue_many([request], using=self.options.using)[0]


def _merge_options(base: EnqueueOptions, options: dict[str, Any]) -> EnqueueOptions:
    unknown = set(options) - {"priority", "queue", "wait", "wait_until", "using"}
    if unknown:
        raise TypeError(
            f"set() got unknown option(s) {sorted(unknown)}; "
            "use priority=, queue=, wait=, wait_until= or using="
        )
    changes: dict[str, Any] = {}
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


def _build(
    job_class: type[Job], options: EnqueueOptions, args: Sequence[Any], kwargs: dict[str, Any]
) -> EnqueueRequest:
    # Read the settings dict directly: Config.__getattr__ costs a microsecond per look-up,
    # and bulk enqueue builds tens of thousands of jobs per call (as did a local import).
    values = _config.get_config().values
    _check_arguments(job_class.job_name, args, kwargs)
    now = _utcnow()
    priority_value = options.priority
    if priority_value is None:
        priority_value = job_class.priority
        if priority_value is None:
            priority_value = values["default_priority"]
    if type(priority_value) is not int:
        priority_value = resolve_priority(priority_value, values["priority_names"])
    queue = options.queue if options.queue is not None else job_class.queue
    if queue is None:
        queue = values["default_queue_name"]
    if options.run_at is not None:
        run_at = options.run_at
    elif options.wait:
        run_at = now + timedelta(seconds=options.wait)
    else:
        run_at = now
    return EnqueueRequest(job_class, list(args), dict(kwargs), priority_value, queue, run_at, _uuid4(), now)


# timeutil.utcnow's naive UTC "now", at a tenth of the cost where datetime.utcnow() is not
# deprecated (it is from 3.12 on, where timeutil's form is used).
_utcnow = datetime.utcnow if sys.version_info < (3, 12) else utcnow
_NO_OPTIONS = EnqueueOptions()  # frozen: one shared instance for build()/perform_later()


# ----------------------------------------------------------------------------- Job
class Job:
    """Subclass and define `perform`. Class attributes set the defaults of every enqueue.

    `class SendEmail(delayed.Job, name="emails.send")` registers under an explicit name, which
    survives renaming the module; without it the name is `module.QualName`.
    During `perform`, `self.record` is the row (id, attempts, queue, ...).
    """

    job_name: ClassVar[str] = ""
    queue: ClassVar[str | None] = None
    priority: ClassVar[int | str | None] = None
    max_attempts: ClassVar[int | None] = None
    max_run_time: ClassVar[float | timedelta | None] = None
    destroy_failed_jobs: ClassVar[bool | None] = None
    # Alert thresholds overriding the priority's (seconds, seconds, attempts); see JobRecord.
    alert_age: ClassVar[float | timedelta | None] = None
    alert_run_time: ClassVar[float | timedelta | None] = None
    alert_attempts: ClassVar[int | None] = None

    record: JobRecord | None = None

    def __init_subclass__(cls, name: str | None = None, abstract: bool = False, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if abstract:
            cls.job_name = ""
            return
        cls.job_name = name or f"{_module_name(cls)}.{cls.__qualname__}"
        _validate_class(cls)
        _registry[cls.job_name] = cls

    def perform(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__qualname__} must define perform()")

    def reschedule_at(self, now: datetime, attempts: int) -> datetime:
        """When to run again after the `attempts`-th failure: the Ruby gem's n**4 + 5 seconds."""
        return now + timedelta(seconds=attempts**4 + 5)

    # -- enqueue ---------------------------------------------------------------------------
    @classmethod
    def set(cls, **options: Any) -> ConfiguredJob:
        """Options for one enqueue: priority=, queue=, wait=, wait_until=, using=."""
        return ConfiguredJob(cls, _merge_options(EnqueueOptions(), options))

    @classmethod
    def build(cls, *args: Any, **kwargs: Any) -> EnqueueRequest:
        """A job ready for `delayed.enqueue_many` (arguments checked now)."""
        return _build(cls, _NO_OPTIONS, args, kwargs)

    @classmethod
    def perform_later(cls, *args: Any, **kwargs: Any) -> int:
        """Insert the job; returns the new row's id."""
        return enqueue_many([_build(cls, _NO_OPTIONS, args, kwargs)])[0]

    @classmethod
    def perform_now(cls, *args: Any, **kwargs: Any) -> Any:
        """Run `perform` in this process at once, with no row (tests, scripts)."""
        _check_arguments(cls.job_name, args, kwargs)
        return cls().perform(*args, **kwargs)


def _module_name(cls: type) -> str:
    """The importable name of the class's module, even for a script run as `python jobs.py`.

    A class defined in `__main__` would otherwise be registered as `__main__.X`, a name no
    worker can import; the script's own module name (from -m, or the file name) is used.
    """
    module = cls.__module__
    if module != "__main__":
        return module
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name and spec.name != "__main__":
        return spec.name
    filename = getattr(main, "__file__", None)
    return Path(filename).stem if filename else module


def _validate_class(cls: type[Job]) -> None:
    from .config import get_config

    if cls.priority is not None and not isinstance(cls.priority, int):
        resolve_priority(cls.priority, get_config().priority_names)
    if cls.max_attempts is not None and (not isinstance(cls.max_attempts, int) or cls.max_attempts < 1):
        raise ValueError(f"{cls.__qualname__}.max_attempts must be an integer >= 1")
    if cls.max_run_time is not None and to_seconds(cls.max_run_time) <= 0:
        raise ValueError(f"{cls.__qualname__}.max_run_time must be more than 0 seconds")


def job(
    function: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    queue: str | None = None,
    priority: int | str | None = None,
    max_attempts: int | None = None,
    max_run_time: float | timedelta | None = None,
) -> Any:
    """Turn a function into a Job class: `@delayed.job(queue="mail")` then `f.perform_later(...)`."""

    def wrap(func: Callable[..., Any]) -> type[Job]:
        def perform(self: Job, *args: Any, **kwargs: Any) -> Any:
            return func(*args, **kwargs)

        namespace = {
            "perform": perform,
            "queue": queue,
            "priority": priority,
            "max_attempts": max_attempts,
            "max_run_time": max_run_time,
            "func": staticmethod(func),
            "__doc__": func.__doc__,
            "__module__": func.__module__,
            "__qualname__": func.__qualname__,
        }
        return type(func.__name__, (Job,), namespace, name=name)  # type: ignore[call-arg]

    return wrap(function) if function is not None else wrap


# ----------------------------------------------------------------------------- enqueue
def enqueue_many(requests: Iterable[EnqueueRequest], using: Any = None) -> list[int]:
    """Insert many jobs in one statement (per 1,000 rows); returns their ids in order.

    `using`: a SQLAlchemy Connection or Session, or a psycopg Connection, to join its
    transaction; without it the jobs are committed at once on the configured database.
    """
    batch = list(requests)
    if not batch:
        return []
    if enqueue_wrappers:
        with ExitStack() as stack:
            for wrapper in list(enqueue_wrappers):
                stack.enter_context(wrapper(batch))
            return _insert_batch(batch, using)
    return _insert_batch(batch, using)


def _insert_batch(batch: list[EnqueueRequest], using: Any) -> list[int]:
    from .backends import insert_rows

    rows = [request.row() for request in batch]
    jobs = [request.job_class.job_name for request in batch]
    with events.instrument("delayed.job.enqueue", jobs=jobs, count=len(rows)) as payload:
        try:
            ids = insert_rows(rows, using)
        except sa.exc.DBAPIError as exc:
            if using is not None:
                raise  # the caller's own transaction: let its error handling see the original
            raise _enqueue_error(jobs, exc) from exc
        payload["ids"] = ids
    return ids


def _enqueue_error(jobs: list[str], exc: sa.exc.DBAPIError) -> EnqueueError:
    from .config import get_config
    from .db import describe_error, redact

    names = ", ".join(sorted(set(jobs)))
    return EnqueueError(
        f"could not enqueue {len(jobs)} job(s) ({names}) on {redact(get_config().database_url)}: "
        f"{describe_error(exc)}. No job was stored; check that the database is reachable and that "
        "`delayed migrate` has created the jobs table."
    )
