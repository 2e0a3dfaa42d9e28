"""Recurring jobs: cron schedules enqueued exactly once per tick across any number of hosts.

    schedule.py   when an entry ticks: a cron expression in a time zone (cronsim), or an interval
    entries.py    entries from `[[cron]]` tables and `delayed.cron(...)`, checked as config
    store.py      the cron tables: a tick and its job in one transaction (insert-or-skip), state
    scheduler.py  the loop that wakes at each tick (a supervisor child, or a thread in `delayed work`)
    api.py        list / run now / pause / resume, for `delayed cron` and the dashboard

No leader: every scheduler may enqueue every tick; the unique (key, tick) row written in the
job's transaction lets exactly one through, and the others do nothing, silently.
"""

from __future__ import annotations

from . import api
from .entries import CronEntry, cron, declared, load_entries
from .schedule import Cron, Every, Schedule, ScheduleError
from .scheduler import Scheduler
from .store import CronStore, EntryState, Run

__all__ = [
    "Cron",
    "CronEntry",
    "CronStore",
    "EntryState",
    "Every",
    "Run",
    "Schedule",
    "ScheduleError",
    "Scheduler",
    "api",
    "cron",
    "declared",
    "load_entries",
]
