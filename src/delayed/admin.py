"""Operating the table: find, read, retry, discard and unlock jobs, and count them.

The Ruby gem keeps failed jobs on purpose so that an operator can read them, fix the cause
and run them again; this module is the Python API for that, and `delayed jobs` (cli/jobs.py)
is its command line. Everything is SQLAlchemy Core on the configured engine, or on an
Engine/Connection passed as `bind=`, and works the same on PostgreSQL, MySQL/MariaDB and
SQLite.

Every function that changes rows returns a `Changed` naming the ids it changed; ids that do
not exist are listed in `unknown`, and rows left alone because a worker holds their lock right
now are listed in `busy` (pass `force=True` to change them anyway). Nothing is ignored silently.

    import delayed
    failed = delayed.admin.list_jobs(failed=True, queue="mail")
    delayed.admin.retry([job.id for job in failed])

Retrying a job that a worker is running would run it twice, and the first run's outcome would
then be dropped (outcomes are written only where the lock still matches), so `retry` and
`discard` skip rows whose lock is live unless forced.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from .backends import backend_for
from .config import Config, get_config
from .db import engine_for
from .errors import DelayedError, UnknownPriorityError
from .monitor import Monitor
from .priority import name_of
from .priority import resolve as resolve_priority
from .record import JobRecord
from .schema import get_table
from .timeutil import to_seconds, utcnow

log = logging.getLogger("delayed.admin")

Bind = Engine | Connection
PriorityFilter = int | str | tuple[int | str | None, int | str | None]

__all__ = [
    "Changed",
    "JobNotFoundError",
    "StatsRow",
    "discard",
    "get",
    "list_jobs",
    "priority_label",
    "priority_range",
    "retry",
    "retry_all_failed",
    "stats",
    "unlock_stale",
]


class JobNotFoundError(DelayedError, LookupError):
    """No row has this id (it may have run and been deleted, or been discarded)."""


@dataclass
class Changed:
    """What an operation did: the ids it changed, the ids it did not find, the ids it skipped."""

    action: str
    ids: list[int] = field(default_factory=list)
    unknown: list[int] = field(default_factory=list)
    busy: list[int] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.ids)

    @property
    def complete(self) -> bool:
        """True when every requested id was changed (nothing unknown, nothing skipped)."""
        return not self.unknown and not self.busy


@dataclass
class StatsRow:
    """Counts for one (queue, priority name) group; the states follow the Ruby gem's monitor.

    ready: live, due and not locked (or its lock expired); future: live and run_at later;
    locked: live, due and locked within the lock timeout; erroring: live with attempts > 0
    (any of the three states above); failed: failed_at set. total = every row of the group.
    max_age: seconds the oldest ready job has waited past its run_at.
    """

    queue: str | None
    priority: str
    total: int = 0
    ready: int = 0
    future: int = 0
    locked: int = 0
    erroring: int = 0
    failed: int = 0
    max_age: float = 0.0  # seconds the oldest ready job has waited (the database's clock)

    def as_dict(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "priority": self.priority,
            "total": self.total,
            "ready": self.ready,
            "future": self.future,
            "locked": self.locked,
            "erroring": self.erroring,
            "failed": self.failed,
            "max_age": self.max_age,
        }


# ----------------------------------------------------------------------------- plumbing
def _setup(bind: Bind | None, config: Config | None) -> tuple[Bind, Config, sa.Table]:
    config = config or get_config()
    bind = bind if bind is not None else engine_for(config.database_url, config.pooler)
    return bind, config, get_table(config.table_name)


@contextmanager
def _reading(bind: Bind) -> Iterator[Connection]:
    """A connection for reads: the caller's, or a short-lived one from the engine."""
    if isinstance(bind, Connection):
        yield bind
        return
    with bind.connect() as conn:
        yield conn


@contextmanager
def _writing(bind: Bind) -> Iterator[Connection]:
    """A transaction: the caller's open one (they commit), else our own, committed on exit."""
    if isinstance(bind, Connection):
        if bind.in_transaction():
            yield bind
        else:
            with bind.begin():
                yield bind
        return
    with bind.begin() as conn:
        yield conn


def _ids(ids: int | Iterable[int]) -> list[int]:
    """Unique ids in the given order; a bool or non-integer id is refused with its value."""
    values = [ids] if isinstance(ids, int) else list(ids)
    out: list[int] = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int):
            try:
                value = int(str(value).strip())
            except ValueError:
                raise ValueError(f"a job id is a whole number, got {value!r}") from None
        if value not in out:
            out.append(value)
    return out


def _live_lock(t: sa.Table, now: datetime, config: Config) -> Any:
    """Rows a worker holds right now: live, with a lock younger than the lock timeout."""
    stale = now - timedelta(seconds=config.lock_timeout)
    return sa.and_(
        t.c.failed_at.is_(None), t.c.finished_at.is_(None), t.c.locked_at.is_not(None), t.c.locked_at >= stale
    )


# ----------------------------------------------------------------------------- priorities
def priority_label(priority: int, config: Config | None = None) -> str:
    """`10 user_visible`: the number and its range's name (negatives count as the first name)."""
    names = (config or get_config()).priority_names
    name = name_of(priority, names) or (min(names, key=names.__getitem__) if names else None)
    return f"{priority} {name}" if name else str(priority)


def _name_bounds(name: str, names: dict[str, int]) -> tuple[int | None, int | None]:
    """The inclusive number range of a priority name; the first is open below, the last above."""
    ordered = sorted(names.items(), key=lambda item: item[1])
    for index, (candidate, bound) in enumerate(ordered):
        if candidate == name:
            low = None if index == 0 else bound
            high = ordered[index + 1][1] - 1 if index + 1 < len(ordered) else None
            return low, high
    resolve_priority(name, names)  # raises UnknownPriorityError listing the known names
    raise AssertionError("unreachable")


def _one_end(value: int | str | None, names: dict[str, int]) -> tuple[int | None, int | None]:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None, None
    if isinstance(value, bool):
        raise UnknownPriorityError(f"priority must be a number or a name, got {value!r}")
    if isinstance(value, int):
        return value, value
    text = value.strip()
    if text.lstrip("-").isdigit():
        return int(text), int(text)
    return _name_bounds(text, names)


def priority_range(value: PriorityFilter, config: Config | None = None) -> tuple[int | None, int | None]:
    """An inclusive (low, high) range from a priority filter; None means unbounded.

    A number is that priority; a name is its whole range (`user_visible` = 10..19 with the
    default names); `a..b` (or a tuple) runs from the start of `a` to the end of `b`, where
    either may be a number or a name and either may be left out (`eventual..`).
    """
    names = (config or get_config()).priority_names
    if isinstance(value, tuple):
        low_value, high_value = value
    elif isinstance(value, str) and ".." in value:
        low_value, high_value = (part.strip() for part in value.split("..", 1))
    else:
        return _one_end(value, names)
    low = _one_end(low_value, names)[0]
    high = _one_end(high_value, names)[1]
    if low is not None and high is not None and low > high:
        raise UnknownPriorityError(f"priority range {value!r} is empty: {low} is above {high}")
    return low, high


# ----------------------------------------------------------------------------- reading
def list_jobs(
    failed: bool | None = None,
    queue: str | Sequence[str] | None = None,
    priority: PriorityFilter | None = None,
    locked: bool | None = None,
    limit: int | None = 50,
    *,
    finished: bool | None = None,
    bind: Bind | None = None,
    config: Config | None = None,
) -> list[JobRecord]:
    """Rows in id order, filtered: failed True/False, queue(s), priority, locked True/False.

    `locked=True` means a worker holds the row right now (lock younger than the lock
    timeout); `locked=False` means anyone may take it. `limit=None` lists every match.
    `finished=True`: only the kept results of successful jobs (keep_finished); False: none
    of them. `failed=False` (live jobs) leaves finished rows out too.
    """
    bind, config, t = _setup(bind, config)
    now = utcnow()
    query = sa.select(t).order_by(t.c.id)
    if failed is not None:
        query = query.where(t.c.failed_at.is_not(None) if failed else t.c.failed_at.is_(None))
        if not failed and finished is None:
            query = query.where(t.c.finished_at.is_(None))
    if finished is not None:
        query = query.where(t.c.finished_at.is_not(None) if finished else t.c.finished_at.is_(None))
    if queue is not None:
        queues = [queue] if isinstance(queue, str) else list(queue)
        query = query.where(t.c.queue.in_(queues))
    if priority is not None:
        low, high = priority_range(priority, config)
        if low is not None:
            query = query.where(t.c.priority >= low)
        if high is not None:
            query = query.where(t.c.priority <= high)
    if locked is not None:
        live = _live_lock(t, now, config)
        query = query.where(live if locked else sa.not_(live))
    if limit is not None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        query = query.limit(limit)
    with _reading(bind) as conn:
        return [JobRecord.from_mapping(row) for row in conn.execute(query).mappings()]


def get(job_id: int, *, bind: Bind | None = None, config: Config | None = None) -> JobRecord:
    """The row with this id; JobNotFoundError when there is none."""
    bind, config, t = _setup(bind, config)
    (wanted,) = _ids(job_id)
    with _reading(bind) as conn:
        row = conn.execute(sa.select(t).where(t.c.id == wanted)).mappings().first()
    if row is None:
        raise JobNotFoundError(
            f"no job with id {wanted} in {t.name} (it may have run and been deleted, or been discarded)"
        )
    return JobRecord.from_mapping(row)


def is_locked(record: JobRecord, config: Config | None = None, now: datetime | None = None) -> bool:
    """True when a worker holds this row right now (its lock is younger than the lock timeout)."""
    config = config or get_config()
    now = now or utcnow()
    if record.failed_at is not None or record.locked_at is None:
        return False
    return record.locked_at >= now - timedelta(seconds=config.lock_timeout)


# ----------------------------------------------------------------------------- changing
def _change(
    conn: Connection,
    t: sa.Table,
    action: str,
    wanted: list[int],
    where: Any,
    statement: Any,
    returning: bool,
    now: datetime,
    config: Config,
    force: bool,
) -> Changed:
    """Apply `statement` (an UPDATE or DELETE on t) to the wanted ids and say what happened.

    With RETURNING (PostgreSQL, SQLite) the write comes first, so SQLite takes its write lock
    before reading; without it (MySQL), the rows are read FOR UPDATE first, so no worker can
    claim them between the read and the write.
    """
    result = Changed(action)
    if not wanted:
        return result
    guard = [t.c.id.in_(wanted), where]
    if not force:
        guard.append(sa.not_(_live_lock(t, now, config)))
    if returning:
        changed = set(conn.execute(statement.where(*guard).returning(t.c.id)).scalars())
    else:
        changed = set(conn.execute(sa.select(t.c.id).where(*guard).with_for_update()).scalars())
        if changed:
            conn.execute(statement.where(t.c.id.in_(sorted(changed))))
    rest = [i for i in wanted if i not in changed]
    present = set()
    if rest:
        present = set(conn.execute(sa.select(t.c.id).where(t.c.id.in_(rest))).scalars())
    result.ids = [i for i in wanted if i in changed]
    result.unknown = [i for i in rest if i not in present]
    result.busy = [i for i in rest if i in present]
    return result


def _retry_values(now: datetime) -> dict[str, Any]:
    return {
        "failed_at": None,
        "locked_at": None,
        "locked_by": None,
        "attempts": 0,
        "run_at": now,
        "updated_at": now,
    }


def retry(
    ids: int | Iterable[int],
    *,
    force: bool = False,
    bind: Bind | None = None,
    config: Config | None = None,
) -> Changed:
    """Run these jobs again now: failed_at and the lock cleared, attempts 0, run_at now.

    Works on failed rows and on live ones (an erroring job waiting for its back-off runs at
    once). last_error is kept until the next run. Rows a worker is running are skipped
    (`busy`) unless `force`. On PostgreSQL idle workers are woken with NOTIFY.
    """
    bind, config, t = _setup(bind, config)
    wanted = _ids(ids)
    now = utcnow()
    with _writing(bind) as conn:
        backend = backend_for(conn.engine, t)
        statement = t.update().values(**_retry_values(now))
        result = _change(
            conn, t, "retry", wanted, sa.true(), statement, conn.dialect.update_returning, now, config, force
        )
        if result.ids:
            backend.notify(conn)
    _log(result)
    return result


def retry_all_failed(
    queue: str | None = None, *, bind: Bind | None = None, config: Config | None = None
) -> Changed:
    """Retry every failed job (of one queue, when given); see `retry`."""
    bind, config, t = _setup(bind, config)
    now = utcnow()
    where = [t.c.failed_at.is_not(None)]
    if queue is not None:
        where.append(t.c.queue == queue)
    with _writing(bind) as conn:
        backend = backend_for(conn.engine, t)
        statement = t.update().where(*where).values(**_retry_values(now))
        if conn.dialect.update_returning:
            ids = sorted(conn.execute(statement.returning(t.c.id)).scalars())
        else:
            ids = sorted(conn.execute(sa.select(t.c.id).where(*where).with_for_update()).scalars())
            if ids:
                conn.execute(statement.where(t.c.id.in_(ids)))
        if ids:
            backend.notify(conn)
    result = Changed("retry", ids=ids)
    _log(result)
    return result


def discard(
    ids: int | Iterable[int],
    *,
    force: bool = False,
    bind: Bind | None = None,
    config: Config | None = None,
) -> Changed:
    """Delete these jobs for good. Rows a worker is running are skipped (`busy`) unless `force`."""
    bind, config, t = _setup(bind, config)
    wanted = _ids(ids)
    now = utcnow()
    with _writing(bind) as conn:
        returning = conn.dialect.delete_returning
        result = _change(conn, t, "discard", wanted, sa.true(), t.delete(), returning, now, config, force)
    _log(result)
    return result


def unlock_stale(
    older_than: float | timedelta | str | None = None,
    *,
    bind: Bind | None = None,
    config: Config | None = None,
) -> Changed:
    """Clear locks older than `older_than` on live rows; the default is the lock timeout.

    Why the lock timeout (max_run_time + 30 s) and not max_run_time: that is the moment every
    worker stops honouring a lock, so clearing it then can never start a second run that a
    worker would not start anyway; a job between max_run_time and the lock timeout may still
    be running, or its supervisor may be about to kill it and count the attempt. An operator
    who knows the worker is gone can pass a shorter `older_than` (e.g. max_run_time, or 0 for
    every lock). Attempts are not changed: the job simply becomes ready again.
    """
    bind, config, t = _setup(bind, config)
    seconds = config.lock_timeout if older_than is None else to_seconds(older_than)
    now = utcnow()
    cutoff = now - timedelta(seconds=seconds)
    where = [t.c.failed_at.is_(None), t.c.locked_at.is_not(None), t.c.locked_at < cutoff]
    values = {"locked_at": None, "locked_by": None, "updated_at": now}
    with _writing(bind) as conn:
        backend = backend_for(conn.engine, t)
        statement = t.update().where(*where).values(**values)
        if conn.dialect.update_returning:
            ids = sorted(conn.execute(statement.returning(t.c.id)).scalars())
        else:
            ids = sorted(conn.execute(sa.select(t.c.id).where(*where).with_for_update()).scalars())
            if ids:
                conn.execute(t.update().where(t.c.id.in_(ids), *where).values(**values))
        if ids:
            backend.notify(conn)
    result = Changed("unlock", ids=ids)
    _log(result)
    return result


def _log(result: Changed) -> None:
    if result.ids:
        log.info("%s: %d job(s): %s", result.action, result.count, result.ids)
    if result.unknown:
        log.warning("%s: no job with id(s) %s", result.action, result.unknown)
    if result.busy:
        log.warning("%s: skipped job(s) %s: a worker is running them now", result.action, result.busy)


# ----------------------------------------------------------------------------- counting
_METRIC_FIELDS = {
    "count": "total",
    "workable_count": "ready",
    "future_count": "future",
    "locked_count": "locked",
    "erroring_count": "erroring",
    "failed_count": "failed",
    "max_age": "max_age",
}


def stats(
    queue: str | Sequence[str] | None = None, *, bind: Bind | None = None, config: Config | None = None
) -> list[StatsRow]:
    """Counts per (queue, priority name), sorted by queue then priority; see StatsRow.

    The numbers are the monitor's (delayed.monitor: its three grouped queries and the same
    bucketing, negative priorities under the first name), read without emitting its metric
    events. Groups without a row are left out.
    """
    bind, config, t = _setup(bind, config)
    queues = [] if queue is None else [queue] if isinstance(queue, str) else list(queue)
    monitor = Monitor(config, queues=queues)
    with _reading(bind) as conn:
        statements = monitor.queries(backend_for(conn.engine, t))
        results = {name: list(conn.execute(statement).mappings()) for name, statement in statements.items()}
    names = config.priority_names
    first = min(names, key=names.__getitem__)
    groups: dict[tuple[str | None, str], StatsRow] = {}
    for metric in monitor.compute(results):
        field_name = _METRIC_FIELDS.get(metric.name)
        if field_name is None:
            continue
        name = metric.priority or first
        group = groups.setdefault((metric.queue, name), StatsRow(metric.queue, name))
        setattr(group, field_name, metric.value)
    order = dict(names)
    found = [g for g in groups.values() if g.total]
    return sorted(found, key=lambda g: (g.queue is None, g.queue or "", order[g.priority]))


# ============================================================================= dashboard (issue 16)
# Filters, keyset pages and actions on every job matching a filter: what the web dashboard
# (delayed.web) needs beyond the functions above. Kept in one block so it moves as a unit.

STATES = ("ready", "scheduled", "running", "failed", "erroring", "all")
PAGE_ORDERS = {
    # state -> the order its page uses. "pickup" is (priority, run_at, id), the workers' own
    # order, served by idx_delayed_jobs_live; the others walk the primary key.
    "ready": "pickup",
    "scheduled": "id",
    "running": "id",
    "failed": "id_desc",
    "erroring": "id_desc",
    "all": "id_desc",
}


class BadCursorError(DelayedError, ValueError):
    """A page cursor that this module did not make (edited, truncated or from another order)."""


@dataclass(frozen=True)
class JobFilter:
    """Which rows a page or a bulk action covers.

    state: one of STATES, with the monitor's meanings (ready: live, due, not locked or lock
    expired; scheduled: live, run_at later; running: live, due, locked within the lock
    timeout; failed: failed_at set; erroring: live with attempts > 0; all: every row).
    queue and name match exactly; priority is a number, a name or a range (see
    `priority_range`); error is text searched in last_error, case-insensitive.
    up_to_id: only rows with id <= this (a bulk action confirmed at one moment does not
    sweep up rows that arrived after the operator looked).
    """

    state: str = "all"
    queue: str | None = None
    name: str | None = None
    priority: PriorityFilter | None = None
    error: str | None = None
    up_to_id: int | None = None

    def __post_init__(self) -> None:
        if self.state not in STATES:
            raise ValueError(f"unknown job state {self.state!r}; known states: {', '.join(STATES)}")
        for attribute in ("queue", "name", "error"):
            value = getattr(self, attribute)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{attribute} must be text, got {value!r}")

    def clauses(self, t: sa.Table, now: datetime, config: Config) -> list[Any]:
        """The WHERE clauses of this filter (the application clock decides "now")."""
        stale = now - timedelta(seconds=config.lock_timeout)
        live = sa.and_(t.c.failed_at.is_(None), t.c.finished_at.is_(None))
        due = t.c.run_at <= now
        held = sa.and_(t.c.locked_at.is_not(None), t.c.locked_at >= stale)
        by_state: dict[str, list[Any]] = {
            "ready": [live, due, sa.or_(t.c.locked_at.is_(None), t.c.locked_at < stale)],
            "scheduled": [live, t.c.run_at > now],
            "running": [live, due, held],
            "failed": [t.c.failed_at.is_not(None)],
            "erroring": [live, t.c.attempts > 0],
            "all": [],
        }
        where = list(by_state[self.state])
        if self.queue is not None:
            where.append(t.c.queue == self.queue)
        if self.name is not None:
            where.append(t.c.name == self.name)
        if self.priority is not None and self.priority != "":
            low, high = priority_range(self.priority, config)
            if low is not None:
                where.append(t.c.priority >= low)
            if high is not None:
                where.append(t.c.priority <= high)
        if self.error:
            where.append(t.c.last_error.icontains(self.error, autoescape=True))
        if self.up_to_id is not None:
            where.append(t.c.id <= self.up_to_id)
        return where


@dataclass
class Page:
    """One page of jobs and the cursor of the next one (None on the last page)."""

    jobs: list[JobRecord]
    next_cursor: str | None
    order: str


def _encode_cursor(order: str, values: list[Any]) -> str:
    text = json.dumps([order, *[v.isoformat() if isinstance(v, datetime) else v for v in values]])
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, order: str) -> list[Any]:
    """The key values a cursor holds; BadCursorError for anything we did not make."""
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error):
        raise BadCursorError(f"page cursor {cursor[:40]!r} is not one this dashboard made") from None
    if not isinstance(raw, list) or not raw or raw[0] != order:
        raise BadCursorError(f"page cursor {cursor[:40]!r} belongs to another page order; start again")
    values = raw[1:]
    try:
        if order == "pickup":
            priority, run_at, job_id = values
            if isinstance(priority, bool) or isinstance(job_id, bool):
                raise TypeError
            return [int(priority), datetime.fromisoformat(run_at), int(job_id)]
        (job_id,) = values
        if isinstance(job_id, bool):
            raise TypeError
        return [int(job_id)]
    except (TypeError, ValueError):
        raise BadCursorError(f"page cursor {cursor[:40]!r} is damaged; start again") from None


def _after(t: sa.Table, order: str, values: list[Any], dialect: str) -> Any:
    """The keyset condition "after this row" for an order."""
    if order == "id":
        return t.c.id > values[0]
    if order == "id_desc":
        return t.c.id < values[0]
    priority, run_at, job_id = values
    if dialect in ("mysql", "mariadb"):
        # MySQL/MariaDB do not turn a row-value comparison into an index range, so spell
        # it out, with a leading `priority >=` the range optimizer can use.
        return sa.and_(
            t.c.priority >= priority,
            sa.or_(
                t.c.priority > priority,
                t.c.run_at > run_at,
                sa.and_(t.c.run_at == run_at, t.c.id > job_id),
            ),
        )
    return sa.tuple_(t.c.priority, t.c.run_at, t.c.id) > sa.tuple_(
        sa.literal(priority), sa.literal(run_at, sa.DateTime()), sa.literal(job_id)
    )


def _order_by(t: sa.Table, order: str) -> list[Any]:
    if order == "pickup":
        return [t.c.priority, t.c.run_at, t.c.id]
    return [t.c.id.desc()] if order == "id_desc" else [t.c.id]


def _key(record: JobRecord, order: str) -> list[Any]:
    return [record.priority, record.run_at, record.id] if order == "pickup" else [record.id]


def page_query(
    flt: JobFilter, after: str | None, limit: int, t: sa.Table, now: datetime, config: Config, dialect: str
) -> sa.Select[Any]:
    """The SELECT of one page (for EXPLAIN in bench/web_million.py and for `page_jobs`).

    Two steps: the ids of the page first (an inner SELECT that only needs the filtered and
    ordered columns, so an index holding them answers it without reading the table, e.g.
    an index-only scan), then those rows, joined by primary key.
    """
    order = PAGE_ORDERS[flt.state]
    where = flt.clauses(t, now, config)
    if after:
        where.append(_after(t, order, _decode_cursor(after, order), dialect))
    ids = (
        sa.select(t.c.id.label("page_id"))
        .where(*where)
        .order_by(*_order_by(t, order))
        .limit(limit + 1)
        .subquery("page")
    )
    return sa.select(t).select_from(t.join(ids, t.c.id == ids.c.page_id)).order_by(*_order_by(t, order))


def page_jobs(
    flt: JobFilter | None = None,
    after: str | None = None,
    limit: int = 50,
    *,
    bind: Bind | None = None,
    config: Config | None = None,
) -> Page:
    """One page of the rows matching `flt`, after the row `after` (a cursor from a Page).

    Keyset pagination: each page is one indexed range read however deep it is, unlike
    OFFSET, which reads and throws away every earlier row. Ready jobs come in pickup order
    (what runs next first); failed, erroring and all newest id first; the rest by id.
    """
    bind, config, t = _setup(bind, config)
    flt = flt or JobFilter()
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    order = PAGE_ORDERS[flt.state]
    with _reading(bind) as conn:
        query = page_query(flt, after, limit, t, utcnow(), config, conn.dialect.name)
        records = [JobRecord.from_mapping(row) for row in conn.execute(query).mappings()]
    more = len(records) > limit
    records = records[:limit]
    cursor = _encode_cursor(order, _key(records[-1], order)) if more and records else None
    return Page(records, cursor, order)


def count_jobs(
    flt: JobFilter | None = None, *, bind: Bind | None = None, config: Config | None = None
) -> int:
    """How many rows match `flt` (one COUNT; for the confirmation of a bulk action)."""
    bind, config, t = _setup(bind, config)
    flt = flt or JobFilter()
    query = sa.select(sa.func.count()).select_from(t).where(*flt.clauses(t, utcnow(), config))
    with _reading(bind) as conn:
        return int(conn.execute(query).scalar_one())


def max_id(*, bind: Bind | None = None, config: Config | None = None) -> int:
    """The highest id in the table (0 when empty): the `up_to_id` of a confirmed bulk action."""
    bind, config, t = _setup(bind, config)
    with _reading(bind) as conn:
        return int(conn.execute(sa.select(sa.func.max(t.c.id))).scalar_one() or 0)


def matching_ids(
    flt: JobFilter, *, batch: int = 1000, bind: Bind | None = None, config: Config | None = None
) -> Iterator[list[int]]:
    """The ids matching `flt`, in id order, `batch` at a time (each batch a fresh read)."""
    bind, config, t = _setup(bind, config)
    last = 0
    while True:
        query = (
            sa.select(t.c.id)
            .where(*flt.clauses(t, utcnow(), config), t.c.id > last)
            .order_by(t.c.id)
            .limit(batch)
        )
        with _reading(bind) as conn:
            ids = list(conn.execute(query).scalars())
        if not ids:
            return
        yield ids
        last = ids[-1]


@dataclass
class Unlocked(Changed):
    """What `unlock` did; `not_locked` lists rows that exist but had no lock (or are failed)."""

    not_locked: list[int] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.unknown and not self.busy and not self.not_locked


def unlock(ids: int | Iterable[int], *, bind: Bind | None = None, config: Config | None = None) -> Unlocked:
    """Clear the lock of these live rows now, whoever holds it, so any worker may run them.

    For an operator who knows the worker holding them is gone (a host that died): workers
    would otherwise wait for the lock timeout. Clearing the lock of a job a live worker is
    still running lets a second worker run it too (that first run's outcome is then dropped,
    since outcomes are written only where the lock matches). Attempts are not changed.
    Rows that have no lock, or are failed, are left alone and listed in `not_locked`.
    """
    bind, config, t = _setup(bind, config)
    wanted = _ids(ids)
    now = utcnow()
    where = sa.and_(t.c.failed_at.is_(None), t.c.locked_at.is_not(None))
    statement = t.update().values(locked_at=None, locked_by=None, updated_at=now)
    with _writing(bind) as conn:
        backend = backend_for(conn.engine, t)
        returning = conn.dialect.update_returning
        changed = _change(conn, t, "unlock", wanted, where, statement, returning, now, config, True)
        if changed.ids:
            backend.notify(conn)
    # With force, _change files rows that exist but did not match as "busy": here that
    # means "had no lock", which is what not_locked says.
    result = Unlocked("unlock", ids=changed.ids, unknown=changed.unknown, not_locked=changed.busy)
    _log(result)
    if result.not_locked:
        log.info("unlock: job(s) %s had no lock", result.not_locked)
    return result


def _merge(into: Changed, part: Changed) -> None:
    into.ids.extend(part.ids)
    into.unknown.extend(part.unknown)
    into.busy.extend(part.busy)
    if isinstance(into, Unlocked) and isinstance(part, Unlocked):
        into.not_locked.extend(part.not_locked)


def act_on_matching(
    action: str,
    flt: JobFilter,
    *,
    force: bool = False,
    batch: int = 1000,
    bind: Bind | None = None,
    config: Config | None = None,
) -> Changed:
    """retry, discard or unlock every row matching `flt`, `batch` ids per transaction.

    Each batch goes through `retry`/`discard`/`unlock` by id, so the same guards apply
    (running rows are skipped as `busy` unless `force`). Batches keep each transaction and
    its row locks short on a large table; a row that stops matching between the read and
    the write (a worker finished it) is reported as unknown or busy, never changed blindly.
    Give `flt.up_to_id` to cover only the rows that existed when the operator confirmed.
    """
    if action not in ("retry", "discard", "unlock"):
        raise ValueError(f"unknown action {action!r}; expected retry, discard or unlock")
    bind, config, _t = _setup(bind, config)
    total: Changed = Unlocked(action) if action == "unlock" else Changed(action)
    for ids in matching_ids(flt, batch=batch, bind=bind, config=config):
        if action == "retry":
            part: Changed = retry(ids, force=force, bind=bind, config=config)
        elif action == "discard":
            part = discard(ids, force=force, bind=bind, config=config)
        else:
            part = unlock(ids, bind=bind, config=config)
        _merge(total, part)
    return total
