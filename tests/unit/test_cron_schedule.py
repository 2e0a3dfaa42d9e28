"""Tick computation: cron expressions in a time zone (daylight saving), intervals since the epoch.

Every host must compute the same ticks, and a tick is the job's run_at, so these pin the
instants (naive UTC) down exactly, including across Europe/Zurich's changes of 2024:
spring forward on 31 March (02:00 CET -> 03:00 CEST, the 02:xx hour does not exist) and
fall back on 27 October (03:00 CEST -> 02:00 CET, the 02:xx hour happens twice).
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

import pytest

from delayed.recurring.schedule import Cron, Every, ScheduleError


def walk(schedule: Cron | Every, start: datetime, count: int) -> list[datetime]:
    ticks, tick = [], start
    for _ in range(count):
        tick = schedule.next_after(tick)
        ticks.append(tick)
    return ticks


# ----------------------------------------------------------------------------- daylight saving
def test_fixed_time_in_the_skipped_hour_runs_once_right_after_the_gap() -> None:
    """02:30 Zurich does not exist on 31 March 2024: that day's tick is 03:00 CEST (01:00 UTC)."""
    nightly = Cron("30 2 * * *", "Europe/Zurich")
    assert walk(nightly, datetime(2024, 3, 29), 4) == [
        datetime(2024, 3, 29, 1, 30),  # 02:30 CET = 01:30 UTC
        datetime(2024, 3, 30, 1, 30),
        datetime(2024, 3, 31, 1, 0),  # the gap: 03:00 CEST
        datetime(2024, 4, 1, 0, 30),  # 02:30 CEST = 00:30 UTC
    ]


def test_fixed_time_in_the_repeated_hour_runs_once_at_its_first_occurrence() -> None:
    """02:30 Zurich happens twice on 27 October 2024: one tick, at 02:30 CEST (00:30 UTC)."""
    nightly = Cron("30 2 * * *", "Europe/Zurich")
    assert walk(nightly, datetime(2024, 10, 25, 12), 3) == [
        datetime(2024, 10, 26, 0, 30),  # 02:30 CEST
        datetime(2024, 10, 27, 0, 30),  # the first 02:30 (CEST); not again at 01:30 UTC
        datetime(2024, 10, 28, 1, 30),  # 02:30 CET
    ]


def test_fixed_time_outside_the_changes_keeps_its_local_time() -> None:
    """03:00 Zurich every day: 02:00 UTC in winter, 01:00 UTC in summer, no day skipped or doubled."""
    nightly = Cron("0 3 * * *", "Europe/Zurich")
    spring = walk(nightly, datetime(2024, 3, 30), 3)
    fall = walk(nightly, datetime(2024, 10, 26), 3)
    assert spring == [datetime(2024, 3, 30, 2), datetime(2024, 3, 31, 1), datetime(2024, 4, 1, 1)]
    assert fall == [datetime(2024, 10, 26, 1), datetime(2024, 10, 27, 2), datetime(2024, 10, 28, 2)]


def test_hourly_follows_real_time_across_both_changes() -> None:
    """A wildcard hour ticks every real hour: 23 local hours in spring, 25 in autumn."""
    hourly = Cron("0 * * * *", "Europe/Zurich")
    spring_day = walk(hourly, datetime(2024, 3, 30, 22, 59), 24)  # from 00:00 CET on the 31st
    assert [b - a for a, b in itertools.pairwise(spring_day)] == [timedelta(hours=1)] * 23
    fall = walk(hourly, datetime(2024, 10, 26, 22, 30), 5)
    assert fall == [datetime(2024, 10, 26, 23), *(datetime(2024, 10, 27, h) for h in range(4))]
    # 00:00 and 01:00 UTC are both 02:00 local: once in CEST, once in CET
    assert [hourly._local(t).strftime("%H:%M%z") for t in fall[1:3]] == ["02:00+0200", "02:00+0100"]


def test_latest_at_or_before_agrees_with_next_after_across_the_changes() -> None:
    """The catch-up step asks for the latest tick at or before now: it must be a real tick."""
    for expression in ("30 2 * * *", "0 * * * *", "*/20 * * * *", "0 30 2 * * *"):
        schedule = Cron(expression, "Europe/Zurich")
        for start in (datetime(2024, 3, 30, 20), datetime(2024, 10, 26, 20)):
            ticks = walk(schedule, start, 30 if expression != "30 2 * * *" else 3)
            for tick in ticks:
                assert schedule.latest_at_or_before(tick) == tick
                assert schedule.latest_at_or_before(tick + timedelta(microseconds=1)) == tick
                assert schedule.next_after(tick - timedelta(microseconds=1)) == tick
            for earlier, later in itertools.pairwise(ticks):
                assert schedule.latest_at_or_before(later - timedelta(seconds=1)) == earlier


# ----------------------------------------------------------------------------- fields
def test_six_fields_put_seconds_first() -> None:
    every_ten = Cron("*/10 * * * * *")
    assert walk(every_ten, datetime(2024, 1, 1, 0, 0, 5), 3) == [
        datetime(2024, 1, 1, 0, 0, 10),
        datetime(2024, 1, 1, 0, 0, 20),
        datetime(2024, 1, 1, 0, 0, 30),
    ]
    assert Cron("15 0 3 * * *").next_after(datetime(2024, 1, 1)) == datetime(2024, 1, 1, 3, 0, 15)
    assert every_ten.count_between(datetime(2024, 1, 1), datetime(2024, 1, 1, 0, 1)) == 6


def test_utc_is_the_default_zone() -> None:
    assert Cron("0 3 * * *").next_after(datetime(2024, 6, 1)) == datetime(2024, 6, 1, 3)


@pytest.mark.parametrize(
    ("expression", "timezone", "message"),
    [
        ("0 3 * *", "UTC", "has 4 field(s)"),
        ("0 25 * * *", "UTC", "does not parse"),
        ("every day", "UTC", "has 2 field(s)"),
        ("0 3 * * *", "Mars/Olympus", "unknown time zone 'Mars/Olympus'"),
    ],
)
def test_bad_expressions_and_zones_say_what_is_wrong(expression: str, timezone: str, message: str) -> None:
    with pytest.raises(ScheduleError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Cron(expression, timezone)


# ----------------------------------------------------------------------------- every
def test_every_ticks_at_multiples_since_the_epoch() -> None:
    """Every host computes the same ticks, whenever it started."""
    half_minute = Every(timedelta(seconds=30))
    assert half_minute.next_after(datetime(2024, 1, 1, 0, 0, 0)) == datetime(2024, 1, 1, 0, 0, 30)
    assert half_minute.next_after(datetime(2024, 1, 1, 0, 0, 29, 999999)) == datetime(2024, 1, 1, 0, 0, 30)
    assert half_minute.latest_at_or_before(datetime(2024, 1, 1, 0, 0, 59)) == datetime(2024, 1, 1, 0, 0, 30)
    seven = Every(timedelta(seconds=7))  # not a divisor of a minute: still epoch-aligned
    tick = seven.next_after(datetime(2024, 1, 1))
    assert (tick - datetime(1970, 1, 1)).total_seconds() % 7 == 0
    assert tick - datetime(2024, 1, 1) <= timedelta(seconds=7)


def test_every_counts_ticks_in_a_half_open_range() -> None:
    second = Every(timedelta(seconds=1))
    start = datetime(2024, 1, 1)
    assert second.count_between(start, start + timedelta(seconds=10)) == 10
    assert second.count_between(start + timedelta(milliseconds=1), start + timedelta(seconds=10)) == 9
    assert second.count_between(start, start) == 0


def test_every_below_one_second_is_refused() -> None:
    with pytest.raises(ScheduleError, match="at least 1 s"):
        Every(timedelta(milliseconds=500))


def test_describe() -> None:
    assert Every(timedelta(seconds=30)).describe() == "every 30s"
    assert Every(timedelta(hours=2)).describe() == "every 2h"
    assert Cron("0 3 * * *", "Europe/Zurich").describe() == "0 3 * * * (Europe/Zurich)"
