"""The scheduler: wakes at each entry's next tick and enqueues it through the store.

Any number may run (one per supervisor, or a thread in `delayed work`): the store's unique
run row makes each tick enqueue once, so there is no leader to elect, lose or wait for, and
no host holds a lock between ticks. Each scheduler keeps, per entry, the first tick it has
not handled yet (`pending`). When woken it takes the most recent due tick:

- due ticks older than that one were missed (the process was down, stopped, or the database
  failed): they are skipped and logged once, in one line;
- the most recent due tick is enqueued if it is at most `[scheduler] catch_up` old, else
  skipped as well (logged in the same line).

At start, `pending` follows the newest tick recorded in the database (by any host), so a
scheduler that was down catches up the last tick it missed; an entry never run before starts
from now (its past ticks are not "missed"). A tick before a resume is not caught up.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from .. import events
from ..config import Config
from ..db import describe_error, redact
from ..timeutil import utcnow
from ..wakeup import Wakeup
from .entries import CronEntry, load_entries
from .store import CronStore

log = logging.getLogger("delayed.cron")

# A tick enqueued later than this after its time is a "catch_up", as is one due before the
# scheduler started; a tick this late is never "missed", whatever catch_up says (waking and the
# database take some time).
LATE = timedelta(seconds=5)
RETRY_DELAY = 5.0  # seconds before trying again after the database failed


@dataclass
class Cursor:
    """One entry as this scheduler tracks it: the first tick not handled yet."""

    entry: CronEntry
    pending: datetime


class Scheduler:
    """Enqueues the ticks of `entries` (default: every configured entry) as they come due.

    `clock` returns naive UTC now (tests move it). `run(stop)` loops until `stop` is set;
    `start()` and `run_due()` are its two steps, for callers that drive it themselves.
    """

    def __init__(
        self,
        config: Config,
        entries: Sequence[CronEntry] | None = None,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.config = config
        self.settings = config.scheduler
        self.entries = list(entries) if entries is not None else load_entries(config)
        self.store = CronStore(config, hold_connection=True)
        self.clock = clock
        self.cursors: dict[str, Cursor] = {}
        self.failing = False  # the last database call failed (logged once until it works again)
        self.next_prune = time.monotonic() + random.uniform(0, min(60.0, self.settings.prune_interval))
        self.enqueued = 0
        self.retry_delay = RETRY_DELAY
        self.started_at: datetime | None = None

    @property
    def catch_up(self) -> timedelta:
        return timedelta(seconds=self.settings.catch_up)

    # -- start -------------------------------------------------------------------------------
    def start(self) -> None:
        """Read the newest recorded tick and the pause state of every entry: where to resume."""
        keys = [entry.key for entry in self.entries]
        last = self.store.last_scheduled(keys)
        states = self.store.states(keys)
        now = self.started_at = self.clock()
        for entry in self.entries:
            since = last.get(entry.key)
            resumed = states[entry.key].resumed_at if entry.key in states else None
            if since is None:
                pending = entry.schedule.next_after(now)  # never ran: nothing was missed
            else:
                if resumed is not None and resumed > since:
                    since = resumed  # ticks while it was paused are not missed ticks
                pending = entry.schedule.next_after(since)
            self.cursors[entry.key] = Cursor(entry, pending)
        log.info(
            "cron scheduler started: %d entr%s on %s (catch_up %g s)",
            len(self.entries),
            "y" if len(self.entries) == 1 else "ies",
            redact(self.config.database_url),
            self.settings.catch_up,
        )

    # -- one pass ----------------------------------------------------------------------------
    def run_due(self) -> datetime:
        """Handle every due tick; return when the next one is due (naive UTC)."""
        now = self.clock()
        retry_at: datetime | None = None
        for cursor in self.cursors.values():
            if cursor.pending <= now and not self._handle(cursor, now):
                retry_at = now + timedelta(seconds=self.retry_delay)
        upcoming = min((c.pending for c in self.cursors.values()), default=now + self._wake)
        if retry_at is not None:
            upcoming = min(upcoming, retry_at)
        return min(upcoming, now + self._wake)

    @property
    def _wake(self) -> timedelta:
        return timedelta(seconds=self.settings.wake_interval)

    def _handle(self, cursor: Cursor, now: datetime) -> bool:
        """Enqueue the most recent due tick (or skip it); False when the database failed."""
        entry = cursor.entry
        due = max(entry.schedule.latest_at_or_before(now), cursor.pending)  # pending is a due tick too
        missed = entry.schedule.count_between(cursor.pending, due)  # due ticks before `due`
        if now - due > max(self.catch_up, LATE):
            self._skipped(entry, cursor.pending, due, missed + 1, enqueued=None)
            cursor.pending = entry.schedule.next_after(due)
            return True
        late = missed or now - due > LATE or (self.started_at is not None and due < self.started_at)
        kind = "catch_up" if late else "schedule"
        try:
            job_id = self.store.enqueue_tick(entry, due, kind)
        except sa.exc.SQLAlchemyError as exc:
            self._failed(entry, due, exc)
            return False
        if self.failing:
            self.failing = False
            log.info("cron scheduler: the database answers again")
        if missed:
            self._skipped(entry, cursor.pending, due, missed, enqueued=due)
        if job_id is not None:
            self.enqueued += 1
            log.debug("cron %s: tick %s enqueued as job %d (%s)", entry.key, due.isoformat(), job_id, kind)
            events.emit("delayed.cron.enqueue", key=entry.key, run_at=due, job_id=job_id, kind=kind)
        cursor.pending = entry.schedule.next_after(due)
        return True

    def _skipped(
        self, entry: CronEntry, first: datetime, last: datetime, count: int, enqueued: datetime | None
    ) -> None:
        """One line for a run of missed ticks, however many."""
        shown = f"{count}" if count < 10_000 else "10000 or more"
        if enqueued is not None:
            log.warning(
                "cron %s: skipped %s missed tick(s) from %s to before %s; enqueued only the most "
                "recent one (%s)",
                entry.key,
                shown,
                first.isoformat(),
                last.isoformat(),
                enqueued.isoformat(),
            )
        else:
            log.warning(
                "cron %s: skipped %s missed tick(s) from %s to %s: more than catch_up (%g s) ago",
                entry.key,
                shown,
                first.isoformat(),
                last.isoformat(),
                self.settings.catch_up,
            )
        events.emit("delayed.cron.skip", key=entry.key, first=first, last=last, count=count)

    def _failed(self, entry: CronEntry, tick: datetime, exc: Exception) -> None:
        if not self.failing:
            self.failing = True
            log.error(
                "cron %s: could not enqueue tick %s on %s: %s; trying again every %g s",
                entry.key,
                tick.isoformat(),
                redact(self.config.database_url),
                describe_error(exc),
                self.retry_delay,
            )
        else:
            log.debug("cron %s: tick %s still failing: %s", entry.key, tick.isoformat(), exc)

    # -- pruning -----------------------------------------------------------------------------
    def maybe_prune(self) -> int:
        """Every prune_interval: delete old run rows (in batches). Never raises."""
        if time.monotonic() < self.next_prune:
            return 0
        self.next_prune = time.monotonic() + self.settings.prune_interval
        cutoff = self.clock() - timedelta(seconds=self.settings.keep_runs)
        try:
            deleted = self.store.prune(cutoff)
        except sa.exc.SQLAlchemyError as exc:
            log.warning(
                "cron scheduler: pruning old runs failed: %s; next try in %g s",
                describe_error(exc),
                self.settings.prune_interval,
            )
            return 0
        if deleted:
            log.info("cron scheduler: pruned %d run record(s) older than %s", deleted, cutoff.isoformat())
        return deleted

    # -- the loop ----------------------------------------------------------------------------
    def run(self, stop: threading.Event | Wakeup) -> None:
        """Start (retrying while the database is unreachable), then tick until `stop` is set."""
        while not stop.is_set():
            try:
                self.start()
                break
            except sa.exc.SQLAlchemyError as exc:
                if not self.failing:
                    self.failing = True
                    log.error(
                        "cron scheduler: cannot read the cron tables on %s: %s; trying again every %g s "
                        "(has `delayed migrate` created them?)",
                        redact(self.config.database_url),
                        describe_error(exc),
                        self.retry_delay,
                    )
                stop.wait(self.retry_delay)
        while not stop.is_set():
            wake_at = self.run_due()
            self.maybe_prune()
            delay = (wake_at - self.clock()).total_seconds()
            if delay > 0:
                stop.wait(delay)
        self.store.close()
        log.info("cron scheduler stopped (%d tick(s) enqueued by this scheduler)", self.enqueued)
