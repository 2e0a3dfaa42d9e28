"""The job API: `Job` classes and the `@delayed.job` decorator.

Subclass `Job` and define `perform`; class attributes (queue, priority, max_attempts,
max_run_time, ...) set the defaults of every enqueue. Defining the class registers it
(delayed.registry) under `module.QualName` or the `name=` it gives, which is what a row's
handler names. `perform_later`, `set(...)` and `build` hand over to delayed.enqueue.
"""

from __future__ import annotations

import asyncio
import inspect
import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

from . import callbacks
from .concurrency import ConcurrencyKey, check_limit
from .config import get_config
from .enqueue import (
    NO_OPTIONS,
    ConfiguredJob,
    EnqueueOptions,
    EnqueueRequest,
    build,
    check_arguments,
    enqueue_one,
    merge_options,
)
from .errors import JobDefinitionError
from .priority import resolve as resolve_priority
from .record import JobRecord
from .registry import register
from .retry import backoff
from .timeutil import to_seconds
from .unique import Unique


# ----------------------------------------------------------------------------- Job
class Job:
    """Subclass and define `perform`. Class attributes set the defaults of every enqueue.

    `class SendEmail(delayed.Job, name="emails.send")` registers under an explicit name, which
    survives renaming the module; without it the name is `module.QualName`. A name belongs to
    one class: a second class under it is refused (JobDefinitionError); the same class defined
    again (a module reload) replaces the first.
    During `perform`, `self.record` is the row (id, attempts, queue, ...).

    Callbacks (`@delayed.before_perform` and friends on methods, see delayed.callbacks) and
    retry rules (`@delayed.retry_on(...)` / `@delayed.discard_on(...)` on the class, see
    delayed.retry) are inherited. In a callback, `self.args` / `self.kwargs` are the job's
    arguments, `self.id` its row id (after the insert, and during perform).
    """

    job_name: ClassVar[str] = ""
    is_async: ClassVar[bool] = False  # `async def perform`: runs on the worker's event loop
    queue: ClassVar[str | None] = None
    priority: ClassVar[int | str | None] = None
    max_attempts: ClassVar[int | None] = None
    max_run_time: ClassVar[float | timedelta | None] = None
    destroy_failed_jobs: ClassVar[bool | None] = None
    # Keep a success's row with its JSON return value this long ("7d", seconds, timedelta);
    # None: [delayed] keep_finished; 0: delete at once. See delayed.results.
    keep_finished: ClassVar[float | timedelta | str | None] = None
    # Alert thresholds overriding the priority's (seconds, seconds, attempts); see priority.job_alerts.
    alert_age: ClassVar[float | timedelta | None] = None
    alert_run_time: ClassVar[float | timedelta | None] = None
    alert_attempts: ClassVar[int | None] = None
    # Issue 13: one queued-or-running job per key (delayed.unique), and at most
    # `concurrency_limit` running at once per `concurrency_key` (delayed.concurrency).
    unique: ClassVar[Unique | None] = None
    concurrency_key: ClassVar[ConcurrencyKey | None] = None
    concurrency_limit: ClassVar[int | None] = None

    _delayed_callbacks: ClassVar[callbacks.Callbacks] = callbacks.NONE

    record: JobRecord | None = None
    id: int | None = None
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = {}
    request: EnqueueRequest | None = None  # during the enqueue callbacks: the row to insert

    def __init_subclass__(cls, name: str | None = None, abstract: bool = False, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if abstract:
            cls.job_name = ""
            return
        origin = f"{_module_name(cls)}.{cls.__qualname__}"
        cls.job_name = name or origin
        check_perform(cls.perform, f"{cls.__qualname__}.perform")
        _validate_class(cls)
        cls.is_async = inspect.iscoroutinefunction(cls.perform)
        cls._delayed_callbacks = callbacks.collect(cls, is_async=cls.is_async)
        register(cls.job_name, cls, origin)

    def perform(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__qualname__} must define perform()")

    def reschedule_at(self, now: datetime, attempts: int) -> datetime:
        """When to run again after the `attempts`-th failure: the Ruby gem's n**4 + 5 seconds."""
        return backoff(now, attempts)

    # -- enqueue ---------------------------------------------------------------------------
    @classmethod
    def set(cls, **options: Any) -> ConfiguredJob:
        """Options for one enqueue: priority=, queue=, wait=, wait_until=, using=, unique_key=,
        concurrency_key=, concurrency_limit=."""
        return ConfiguredJob(cls, merge_options(EnqueueOptions(), options))

    @classmethod
    def build(cls, *args: Any, **kwargs: Any) -> EnqueueRequest:
        """A job ready for `delayed.enqueue_many` (arguments checked now)."""
        return build(cls, NO_OPTIONS, args, kwargs)

    @classmethod
    def perform_later(cls, *args: Any, **kwargs: Any) -> int | None:
        """Insert the job (inside its enqueue callbacks); the new row's id, None if a callback aborted."""
        return enqueue_one(build(cls, NO_OPTIONS, args, kwargs))

    @classmethod
    def perform_now(cls, *args: Any, **kwargs: Any) -> Any:
        """Run `perform` in this process at once, inside its perform callbacks, with no row.

        The retry rules do not apply (nothing is rescheduled): an exception reaches the caller.
        An async job runs with asyncio.run (inside a running loop, `await aperform_now(...)`).
        """
        if cls.is_async:
            return asyncio.run(cls.aperform_now(*args, **kwargs))
        check_arguments(cls.job_name, args, kwargs)
        job = cls()
        job.args, job.kwargs = tuple(args), dict(kwargs)
        return callbacks.run(job, lambda: job.perform(*args, **kwargs))

    @classmethod
    async def aperform_now(cls, *args: Any, **kwargs: Any) -> Any:
        """`perform_now` for an async job, awaited on the caller's loop."""
        if not cls.is_async:
            raise TypeError(f"{cls.__qualname__}.perform is not `async def`: call perform_now(...)")
        check_arguments(cls.job_name, args, kwargs)
        job = cls()
        job.args, job.kwargs = tuple(args), dict(kwargs)
        return await callbacks.run_async(job, lambda: job.perform(*args, **kwargs))


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


def check_perform(perform: Callable[..., Any], where: str) -> None:
    """Refuse a perform whose body a worker would never run.

    Workers call a plain perform and take its return as the end of the job, and await an
    `async def` one on their event loop (delayed.eventloop). A generator function would
    return a generator that never started, an async generator function one nothing iterates.
    The executor refuses a coroutine returned by a plain perform as well (delayed.executor).
    """
    if inspect.isasyncgenfunction(perform):
        raise JobDefinitionError(
            f"{where} is an async generator function (it yields): a worker would never run its "
            "body. Make it `async def` without yield"
        )
    if inspect.isgeneratorfunction(perform):
        raise JobDefinitionError(
            f"{where} is a generator function (it yields): a worker would never run its body. "
            "Make it a plain function that does the work when called"
        )


def _validate_class(cls: type[Job]) -> None:
    if cls.priority is not None and not isinstance(cls.priority, int):
        resolve_priority(cls.priority, get_config().priority_names)
    if cls.max_attempts is not None and (not isinstance(cls.max_attempts, int) or cls.max_attempts < 1):
        raise ValueError(f"{cls.__qualname__}.max_attempts must be an integer >= 1")
    if cls.keep_finished is not None and to_seconds(cls.keep_finished) < 0:
        raise ValueError(f"{cls.__qualname__}.keep_finished must be 0 seconds or more")
    if cls.max_run_time is not None and to_seconds(cls.max_run_time) <= 0:
        raise ValueError(f"{cls.__qualname__}.max_run_time must be more than 0 seconds")
    if cls.unique is not None:
        if not isinstance(cls.unique, Unique):
            raise TypeError(f"{cls.__qualname__}.unique must be a delayed.Unique(...), got {cls.unique!r}")
        cls.unique.check(cls, cls.__qualname__)
    if cls.concurrency_limit is not None:
        check_limit(cls.__qualname__, cls.concurrency_limit)
    if cls.concurrency_key is not None and not (
        isinstance(cls.concurrency_key, str) or callable(cls.concurrency_key)
    ):
        raise TypeError(f"{cls.__qualname__}.concurrency_key must be a format string or a callable")


def job(
    function: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    queue: str | None = None,
    priority: int | str | None = None,
    max_attempts: int | None = None,
    max_run_time: float | timedelta | None = None,
    unique: Unique | None = None,
    concurrency_key: ConcurrencyKey | None = None,
    concurrency_limit: int | None = None,
) -> Any:
    """Turn a function into a Job class: `@delayed.job(queue="mail")` then `f.perform_later(...)`."""

    def wrap(func: Callable[..., Any]) -> type[Job]:
        check_perform(func, f"@delayed.job function {func.__qualname__}")

        def perform(self: Job, *args: Any, **kwargs: Any) -> Any:
            return func(*args, **kwargs)

        async def perform_async(self: Job, *args: Any, **kwargs: Any) -> Any:
            return await func(*args, **kwargs)

        namespace = {
            "perform": perform_async if inspect.iscoroutinefunction(func) else perform,
            "queue": queue,
            "priority": priority,
            "max_attempts": max_attempts,
            "max_run_time": max_run_time,
            "unique": unique,
            "concurrency_key": concurrency_key,
            "concurrency_limit": concurrency_limit,
            "func": staticmethod(func),
            "__doc__": func.__doc__,
            "__module__": func.__module__,
            "__qualname__": func.__qualname__,
        }
        return type(func.__name__, (Job,), namespace, name=name)  # type: ignore[call-arg]

    return wrap(function) if function is not None else wrap
