"""The operator API of recurring jobs: what `delayed cron` and the dashboard call.

    entries(config)            every entry, checked (ConfigError naming a bad one)
    status(config)             per entry: schedule, next tick, paused, last run and its job's state
    run_now(config, key)       enqueue one job now (recorded as a "manual" run)
    pause(config, key)         stop enqueuing its ticks, on every host (stored in the database)
    resume(config, key)        enqueue again from the next tick (ticks while paused are not caught up)

Each takes the Config it works on (its database, its jobs table) and raises ConfigError for
a key no entry has, and SQLAlchemy errors for a database that fails.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..config import Config
from ..errors import ConfigError
from ..timeutil import utcnow
from .entries import CronEntry, load_entries
from .store import CronStore, Run


@dataclass(frozen=True)
class EntryStatus:
    """One entry as an operator sees it."""

    key: str
    schedule: str  # the cron expression, or "every 30s"
    timezone: str | None
    job: str
    queue: str | None
    priority: int | str | None
    paused: bool
    next_tick: datetime | None  # naive UTC; None while paused
    last_run: Run | None  # the newest enqueued tick, of any kind
    last_job_state: str | None  # the state of last_run's job (see CronStore.job_states)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: datetimes as ISO 8601 strings (naive UTC, as stored)."""
        last = self.last_run
        return {
            "key": self.key,
            "schedule": self.schedule,
            "timezone": self.timezone,
            "job": self.job,
            "queue": self.queue,
            "priority": self.priority,
            "paused": self.paused,
            "next_tick": _iso(self.next_tick),
            "last_tick": _iso(last.run_at) if last else None,
            "last_kind": last.kind if last else None,
            "last_job_id": last.job_id if last else None,
            "last_enqueued_at": _iso(last.enqueued_at) if last else None,
            "last_job_state": self.last_job_state,
        }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def entries(config: Config) -> list[CronEntry]:
    """Every entry (file, then code), each checked; the `require` modules must be imported."""
    return load_entries(config)


def find(config: Config, key: str) -> CronEntry:
    """The entry `key`, or a ConfigError listing the keys there are."""
    found = {entry.key: entry for entry in entries(config)}
    if key not in found:
        known = ", ".join(sorted(found)) or "none (add [[cron]] tables or delayed.cron() calls)"
        raise ConfigError(f"no cron entry has the key {key!r}; the keys are: {known}")
    return found[key]


def status(config: Config, now: datetime | None = None) -> list[EntryStatus]:
    """Every entry with its next tick, pause state, newest run and that run's job state."""
    now = now or utcnow()
    listed = entries(config)
    store = CronStore(config)
    keys = [entry.key for entry in listed]
    states = store.states(keys)
    latest = store.latest_runs(keys)
    job_states = store.job_states([run.job_id for run in latest.values() if run.job_id is not None], now)
    result = []
    for entry in listed:
        paused = states[entry.key].paused if entry.key in states else False
        last = latest.get(entry.key)
        result.append(
            EntryStatus(
                key=entry.key,
                schedule=entry.schedule.describe(),
                timezone=entry.timezone,
                job=entry.job,
                queue=entry.queue,
                priority=entry.priority,
                paused=paused,
                next_tick=None if paused else entry.schedule.next_after(now),
                last_run=last,
                last_job_state=job_states.get(last.job_id) if last and last.job_id is not None else None,
            )
        )
    return result


def run_now(config: Config, key: str, now: datetime | None = None) -> tuple[int, datetime]:
    """Enqueue the entry's job now, paused or not; returns (job id, its run_at)."""
    entry = find(config, key)
    run_at = now or utcnow()
    job_id = CronStore(config).enqueue_tick(entry, run_at, "manual")
    if job_id is None:  # the same microsecond as another manual run of this key
        raise ConfigError(f"cron entry {key!r} already has a run at {run_at.isoformat()}; try again")
    return job_id, run_at


def pause(config: Config, key: str) -> bool:
    """Pause `key` on every host; False when it was already paused."""
    find(config, key)
    return CronStore(config).set_paused(key, True)


def resume(config: Config, key: str) -> bool:
    """Resume `key` on every host; False when it was not paused."""
    find(config, key)
    return CronStore(config).set_paused(key, False)
