"""Cron entries: declared in `[[cron]]` tables or in code (`delayed.cron(...)`), checked once.

An entry says which job to enqueue at each tick of its schedule, with which arguments, queue
and priority. Whatever is wrong with one (a schedule that does not parse, an unknown time
zone, a job name no module registered, arguments that are not JSON, a key used twice) is a
ConfigError naming the entry, raised before any scheduler starts, so a broken entry is one
clear exit 2 rather than a tick that fails every night.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..config import Config, CronSettings
from ..enqueue import EnqueueRequest, check_arguments
from ..errors import ConfigError, DelayedError
from ..priority import resolve as resolve_priority
from ..registry import find
from ..timeutil import to_seconds
from .schedule import Cron, Every, Schedule, ScheduleError

if TYPE_CHECKING:  # typing only: job.py is imported by the package's users, not here
    from ..job import Job

MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class CronEntry:
    """One recurring job: at each tick of `schedule`, enqueue `job` with these arguments."""

    key: str
    schedule: Schedule
    job: str  # the registered job name
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    queue: str | None = None
    priority: int | str | None = None
    source: str = "code"  # where it was declared, for error messages

    def job_class(self) -> type[Job]:
        cls = find(self.job)
        if cls is None:
            raise ConfigError(f"{self.where}: job {self.job!r} is not a registered job name")
        return cls

    @property
    def where(self) -> str:
        return f"{self.source} (cron entry {self.key!r})"

    @property
    def timezone(self) -> str | None:
        return self.schedule.timezone if isinstance(self.schedule, Cron) else None

    def request(self, run_at: datetime) -> EnqueueRequest:
        """The job of the tick `run_at`: the tick is its run_at, so the job knows which it serves."""
        options: dict[str, Any] = {"wait_until": run_at}
        if self.queue is not None:
            options["queue"] = self.queue
        if self.priority is not None:
            options["priority"] = self.priority
        return self.job_class().set(**options).build(*self.args, **self.kwargs)


# ----------------------------------------------------------------------------- in code
_declared: dict[str, CronEntry] = {}


def cron(
    key: str,
    schedule: str | None = None,
    job: type[Job] | str | None = None,
    *,
    every: float | str | timedelta | None = None,
    args: Sequence[Any] = (),
    kwargs: dict[str, Any] | None = None,
    queue: str | None = None,
    priority: int | str | None = None,
    timezone: str = "UTC",
) -> CronEntry:
    """Declare a recurring job in code (in a module listed in `require`).

    `delayed.cron("nightly-report", "0 3 * * *", NightlyReport, args=["full"], queue="reports")`
    or `delayed.cron("heartbeat", every="30s", job=Heartbeat)`. The schedule, time zone and
    arguments are checked now; a job given by name is checked when the scheduler loads the
    entries (its module may be imported later). Declaring a key again replaces the entry (a
    module reloaded); a key also used by a `[[cron]]` table is refused when entries load.
    """
    if job is None:
        raise TypeError(f"cron({key!r}, ...): job= is required (a Job class or a registered name)")
    name = job if isinstance(job, str) else getattr(job, "job_name", "")
    if not name:
        raise TypeError(f"cron({key!r}, ...): job must be a registered Job class or its name, got {job!r}")
    entry = _entry(
        key=key,
        schedule=schedule,
        every=every,
        job=name,
        args=args,
        kwargs=kwargs or {},
        queue=queue,
        priority=priority,
        timezone=timezone,
        source=_caller(),
    )
    _declared[key] = entry
    return entry


def declared() -> dict[str, CronEntry]:
    """The entries declared in code so far (a copy)."""
    return dict(_declared)


def forget(key: str) -> None:
    """Drop a code-declared entry (tests)."""
    _declared.pop(key, None)


def _caller() -> str:
    """'module.py:12': where cron() was called, for error messages."""
    frame = inspect.currentframe()
    outer = frame.f_back.f_back if frame is not None and frame.f_back is not None else None
    if outer is None:
        return "code"
    return f"delayed.cron() at {outer.f_code.co_filename.rsplit('/', 1)[-1]}:{outer.f_lineno}"


# ----------------------------------------------------------------------------- checking
def _entry(
    *,
    key: Any,
    schedule: str | None,
    every: Any,
    job: str,
    args: Sequence[Any],
    kwargs: dict[str, Any],
    queue: str | None,
    priority: int | str | None,
    timezone: str,
    source: str,
) -> CronEntry:
    """Build one entry, checking everything that does not need the job registry."""
    if not isinstance(key, str) or not key.strip():
        raise ConfigError(f"{source}: a cron entry needs a key (a unique, stable name), got {key!r}")
    where = f"{source} (cron entry {key!r})"
    if len(key) > MAX_KEY_LENGTH:
        raise ConfigError(f"{where}: key is longer than {MAX_KEY_LENGTH} characters")
    if not job:
        raise ConfigError(f"{where}: job is missing; give the registered name of a job class")
    if (schedule is None) == (every is None):
        raise ConfigError(
            f"{where}: give either schedule (a cron expression) or every (an interval), not both"
        )
    try:
        if every is not None:
            seconds = every if isinstance(every, float) else to_seconds(every)
            if timezone not in ("UTC", None):
                raise ScheduleError(
                    "timezone applies to schedule only; every counts from the Unix epoch in UTC"
                )
            timing: Schedule = Every(timedelta(seconds=seconds))
        else:
            timing = Cron(str(schedule), timezone or "UTC")
    except ValueError as exc:  # ScheduleError or a bad duration
        raise ConfigError(f"{where}: {exc}") from None
    try:
        check_arguments(job, list(args), dict(kwargs))
    except DelayedError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return CronEntry(key, timing, job, tuple(args), dict(kwargs), queue, priority, source)


def _from_table(table: CronSettings, number: int, source: str) -> CronEntry:
    return _entry(
        key=table.key,
        schedule=table.schedule,
        every=table.every,
        job=table.job,
        args=table.args,
        kwargs=table.kwargs,
        queue=table.queue,
        priority=table.priority,
        timezone=table.timezone,
        source=f"{source} [[cron]] #{number}",
    )


def load_entries(config: Config) -> list[CronEntry]:
    """Every entry, from the file's `[[cron]]` tables then from code, each checked in full.

    Call after the `require` modules are imported: job names are looked up in the registry.
    """
    entries: dict[str, CronEntry] = {}
    for number, table in enumerate(config.cron, start=1):
        entry = _from_table(table, number, config.source)
        if entry.key in entries:
            raise ConfigError(
                f"{entry.where}: key {entry.key!r} is also used by {entries[entry.key].source}; "
                "give each entry its own key"
            )
        entries[entry.key] = entry
    for entry in _declared.values():
        if entry.key in entries:
            raise ConfigError(
                f"{entry.where}: key {entry.key!r} is also used by {entries[entry.key].source}; "
                "give each entry its own key"
            )
        entries[entry.key] = entry
    for entry in entries.values():
        _check_job(entry, config)
    return list(entries.values())


def _check_job(entry: CronEntry, config: Config) -> None:
    cls = find(entry.job)
    if cls is None:
        raise ConfigError(
            f"{entry.where}: job {entry.job!r} is not a registered job name; add the module that "
            "defines it to `require` in [delayed] (or pass --require), and check the spelling "
            "(module.ClassName, or the class's name=)"
        )
    priority = entry.priority if entry.priority is not None else cls.priority
    if priority is not None and not isinstance(priority, int):
        try:
            resolve_priority(priority, config.priority_names)
        except DelayedError as exc:
            raise ConfigError(f"{entry.where}: priority: {exc}") from None
