"""When an entry ticks: a cron expression in a time zone, or a fixed interval since the epoch.

Every host must compute the same ticks, because a tick's time is half of the key that makes
it enqueue once (delayed_cron_runs' primary key). So ticks are whole instants derived only
from the entry: a cron expression evaluated in its IANA time zone, or multiples of an
interval since the Unix epoch. Both are handed out as naive UTC datetimes, the form every
timestamp column holds.

Cron expressions are parsed and evaluated by cronsim (5 fields, or 6 with seconds first;
Debian cron's day-of-month/day-of-week rule; `L`, `#`, `LW`). Across a daylight-saving change
it behaves like Debian cron: an entry at a fixed hour and minute whose local time falls in the
skipped hour runs at the first minute after the gap; one whose local time occurs twice (the
repeated hour) runs once, at the first occurrence; an entry whose minute or hour field is a
wildcard follows real time (an hourly entry ticks every real hour, 23 or 25 a day).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

_EPOCH = datetime(1970, 1, 1)
_SECOND = timedelta(seconds=1)
COUNT_LIMIT = 10_000  # ticks counted one by one at most (the count of skipped ticks in a log line)


class ScheduleError(ValueError):
    """A schedule or time zone that cannot be used; the message says what is wrong."""


def zone(name: str) -> tzinfo:
    """The IANA time zone `name` (UTC as the fixed `datetime.UTC`, which cronsim treats directly)."""
    if name.upper() in {"UTC", "ETC/UTC", "Z"}:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ScheduleError(
            f"unknown time zone {name!r} ({exc}); use an IANA name such as 'Europe/Zurich' or 'UTC'"
            " (install the tzdata package where the system has no time zone database)"
        ) from None


class Schedule:
    """What the scheduler asks of an entry's timing; all datetimes naive UTC."""

    def next_after(self, moment: datetime) -> datetime:
        """The first tick strictly after `moment`."""
        raise NotImplementedError

    def latest_at_or_before(self, moment: datetime) -> datetime:
        """The last tick at or before `moment`."""
        raise NotImplementedError

    def count_between(self, start: datetime, end: datetime) -> int:
        """How many ticks t satisfy start <= t < end (counted up to COUNT_LIMIT)."""
        count = 0
        tick = self.next_after(start - timedelta(microseconds=1))
        while tick < end and count < COUNT_LIMIT:
            count += 1
            tick = self.next_after(tick)
        return count

    def describe(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True)
class Every(Schedule):
    """Ticks at whole multiples of `interval` since 1970-01-01 00:00:00 UTC."""

    interval: timedelta

    def __post_init__(self) -> None:
        if self.interval < _SECOND:
            raise ScheduleError(f"every must be at least 1 s, got {self.interval.total_seconds():g} s")

    @property
    def _step(self) -> int:
        return self.interval // timedelta(microseconds=1)

    def _index(self, moment: datetime) -> int:
        """Index of the last tick at or before `moment` (integer microseconds: exact)."""
        return ((moment - _EPOCH) // timedelta(microseconds=1)) // self._step

    def _tick(self, index: int) -> datetime:
        return _EPOCH + timedelta(microseconds=index * self._step)

    def next_after(self, moment: datetime) -> datetime:
        return self._tick(self._index(moment) + 1)

    def latest_at_or_before(self, moment: datetime) -> datetime:
        return self._tick(self._index(moment))

    def count_between(self, start: datetime, end: datetime) -> int:
        if end <= start:
            return 0
        first = self._index(start - timedelta(microseconds=1)) + 1
        last = self._index(end - timedelta(microseconds=1))
        return max(0, last - first + 1)

    def describe(self) -> str:
        seconds = self.interval.total_seconds()
        for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
            if seconds >= size and seconds % size == 0:
                return f"every {seconds / size:g}{unit}"
        return f"every {seconds:g}s"


@dataclass(frozen=True)
class Cron(Schedule):
    """A cron expression read in the time zone `timezone` (an IANA name)."""

    expression: str
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        fields = self.expression.split()
        if len(fields) not in (5, 6):
            raise ScheduleError(
                f"cron expression {self.expression!r} has {len(fields)} field(s); give 5 "
                "(minute hour day-of-month month day-of-week) or 6 (seconds first)"
            )
        self._zone()  # an unknown time zone is refused now, not at the first tick
        try:
            CronSim(self.expression, datetime(2000, 1, 1, tzinfo=UTC))
        except CronSimError as exc:
            raise ScheduleError(f"cron expression {self.expression!r} does not parse: {exc}") from None

    def _zone(self) -> tzinfo:
        return zone(self.timezone)

    def _local(self, moment: datetime) -> datetime:
        return moment.replace(tzinfo=UTC).astimezone(self._zone())

    @staticmethod
    def _utc(moment: datetime) -> datetime:
        return moment.astimezone(UTC).replace(tzinfo=None)

    def next_after(self, moment: datetime) -> datetime:
        return self._utc(next(CronSim(self.expression, self._local(moment))))

    def latest_at_or_before(self, moment: datetime) -> datetime:
        # cronsim's reverse iteration yields ticks strictly before its start (whole seconds),
        # so start one second after `moment` truncated to the second.
        start = self._local(moment.replace(microsecond=0) + _SECOND)
        tick = self._utc(next(CronSim(self.expression, start, reverse=True)))
        # Around a daylight-saving gap cronsim moves a skipped local time forward; never
        # hand back a tick after `moment`.
        while tick > moment:
            tick = self._utc(next(CronSim(self.expression, self._local(tick - _SECOND), reverse=True)))
        return tick

    def ticks(self, after: datetime, count: int) -> list[datetime]:
        """The next `count` ticks after `after` (for displays and tests)."""
        found: list[datetime] = []
        tick = after
        for _ in itertools.repeat(None, count):
            tick = self.next_after(tick)
            found.append(tick)
        return found

    def describe(self) -> str:
        return self.expression if self.timezone.upper() == "UTC" else f"{self.expression} ({self.timezone})"
