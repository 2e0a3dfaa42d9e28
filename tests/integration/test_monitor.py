"""The monitor's figures against a table of known rows, on every backend."""

from __future__ import annotations

import re
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from delayed import events
from delayed.config import build_config
from delayed.errors import ConfigError
from delayed.monitor import METRICS, Metric, Monitor
from delayed.schema import jobs
from delayed.timeutil import utcnow
from tests.helpers import wait_for
from tests.statsd_helpers import write_toml

NAMES = ("interactive", "user_visible", "eventual", "reporting")
# Slack for ages: rows are written with the test's clock and measured with the database's a
# moment later; on a loaded machine that moment can be long. Never a speed assertion.
SLACK = 45.0


def insert(
    db: Any,
    *,
    priority: int,
    queue: str | None = "default",
    run_in: float = 0.0,
    locked_ago: float | None = None,
    failed: bool = False,
    attempts: int = 0,
) -> None:
    """A row whose times are relative to now (seconds)."""
    now = utcnow()
    row = {
        "priority": priority,
        "attempts": attempts,
        "handler": '{"job":"tests.noop","args":[],"kwargs":{}}',
        "name": "tests.noop",
        "queue": queue,
        "run_at": now + timedelta(seconds=run_in),
        "locked_at": None if locked_ago is None else now - timedelta(seconds=locked_ago),
        "locked_by": None if locked_ago is None else "host:test pid:1",
        "failed_at": now if failed else None,
        "created_at": now,
        "updated_at": now,
    }
    with db.engine.begin() as conn:
        conn.execute(jobs.insert().values(**row))


def fill_known_table(db: Any) -> None:
    """The fixture behind the expected figures below (lock timeout 330 s: max_run_time 300)."""
    # interactive (0-9, and negatives), queue default
    insert(db, priority=0, run_in=-30)  # A workable
    insert(db, priority=5, run_in=3600, attempts=1)  # B future, erroring
    insert(db, priority=3, run_in=-600, locked_ago=180)  # C working: max_lock_age 180
    insert(db, priority=0, run_in=-1000, failed=True, attempts=25)  # D failed (not erroring)
    insert(db, priority=9, run_in=-90, locked_ago=400, attempts=2)  # E stale lock: workable, oldest
    insert(db, priority=-5, run_in=-5)  # N negative: bucketed as interactive
    # user_visible, default
    insert(db, priority=10, run_in=-90)  # F workable: max_age 90 = 50 % of 180 s
    # reporting, default
    insert(db, priority=100, run_in=-40, locked_ago=30)  # H working
    # queue "mail", eventual: failed only
    insert(db, priority=20, queue="mail", run_in=-10, failed=True, attempts=3)  # I
    # no queue, user_visible
    insert(db, priority=15, queue=None, run_in=-10)  # J workable


def config_for(db: Any, **overrides: Any) -> Any:
    return build_config(environ={}, overrides={"database_url": db.url, "max_run_time": 300, **overrides})


def as_map(metrics: list[Metric]) -> dict[tuple[str, str | None, str | None], int | float]:
    result = {(m.name, m.priority, m.queue): m.value for m in metrics}
    assert len(result) == len(metrics), "a metric was reported twice for one group"
    return result


def assert_age(value: float, expected: float) -> None:
    assert expected <= value < expected + SLACK, f"age {value} not in [{expected}, {expected + SLACK})"


def test_figures_on_a_known_table(db: Any) -> None:
    fill_known_table(db)
    got = as_map(Monitor(config_for(db)).run_once())

    exact = {
        # interactive/default: A B C D E N
        ("count", "interactive", "default"): 6,
        ("future_count", "interactive", "default"): 1,
        ("locked_count", "interactive", "default"): 1,
        ("working_count", "interactive", "default"): 1,
        ("workable_count", "interactive", "default"): 3,
        ("erroring_count", "interactive", "default"): 2,
        ("failed_count", "interactive", "default"): 1,
        ("alert_age_percent", "interactive", "default"): 100.0,  # 90 s of 60 s, capped
        # user_visible/default: F
        ("count", "user_visible", "default"): 1,
        ("future_count", "user_visible", "default"): 0,
        ("locked_count", "user_visible", "default"): 0,
        ("working_count", "user_visible", "default"): 0,
        ("workable_count", "user_visible", "default"): 1,
        ("erroring_count", "user_visible", "default"): 0,
        ("failed_count", "user_visible", "default"): 0,
        ("max_lock_age", "user_visible", "default"): 0,
        # reporting/default: H
        ("count", "reporting", "default"): 1,
        ("locked_count", "reporting", "default"): 1,
        ("working_count", "reporting", "default"): 1,
        ("workable_count", "reporting", "default"): 0,
        ("max_age", "reporting", "default"): 0,
        ("alert_age_percent", "reporting", "default"): 0,
        # eventual/mail: I, found by the failed query only
        ("count", "eventual", "mail"): 1,
        ("failed_count", "eventual", "mail"): 1,
        # user_visible/no queue: J, found by the live and pending queries
        ("count", "user_visible", None): 1,
        ("future_count", "user_visible", None): 0,
        ("erroring_count", "user_visible", None): 0,
        ("locked_count", "user_visible", None): 0,
        ("workable_count", "user_visible", None): 1,
    }
    for key, value in exact.items():
        assert got[key] == value, f"{key}: expected {value}, got {got[key]}"
    assert_age(got[("max_lock_age", "interactive", "default")], 180)
    assert_age(got[("max_age", "interactive", "default")], 90)  # E; C is locked, D failed
    assert_age(got[("max_age", "user_visible", "default")], 90)
    assert 50.0 <= got[("alert_age_percent", "user_visible", "default")] < 50.0 + SLACK / 180 * 100
    assert_age(got[("max_lock_age", "reporting", "default")], 30)
    assert_age(got[("max_age", "user_visible", None)], 10)

    # zero baseline: eventual/default has no rows, every metric is there and 0
    for metric in METRICS:
        assert got[(metric, "eventual", "default")] == 0
    # groups outside the baseline only in the metrics whose query found them
    mail = {m for (m, p, q) in got if (p, q) == ("eventual", "mail")}
    assert mail == {"count", "failed_count"}
    no_queue = {m for (m, p, q) in got if (p, q) == ("user_visible", None)}
    assert no_queue == set(METRICS) - {"failed_count"}


def test_queue_filter_sets_the_baseline(db: Any) -> None:
    fill_known_table(db)
    got = as_map(Monitor(config_for(db), queues=["default", "mail", "empty"]).run_once())
    groups = {(p, q) for (_, p, q) in got}
    assert groups == {(name, queue) for name in NAMES for queue in ("default", "mail", "empty")}
    assert len(got) == len(METRICS) * len(NAMES) * 3  # every metric for every group
    assert got[("failed_count", "eventual", "mail")] == 1
    assert got[("count", "eventual", "mail")] == 1
    assert got[("future_count", "eventual", "mail")] == 0
    assert all(got[(m, n, "empty")] == 0 for m in METRICS for n in NAMES)
    assert got[("count", "interactive", "default")] == 6  # J (no queue) is filtered out


def test_queues_come_from_monitor_then_delayed_sections(db: Any, tmp_path: Path) -> None:
    path = write_toml(
        tmp_path / "m.toml",
        {"delayed": {"database_url": db.url, "queues": ["a"]}, "monitor": {"interval": "2m"}},
    )
    config = build_config(path, environ={})
    assert Monitor(config).queues == ["a"] and Monitor(config).interval == 120.0
    path = write_toml(
        tmp_path / "n.toml",
        {"delayed": {"database_url": db.url, "queues": ["a"]}, "monitor": {"queues": ["b", "c"]}},
    )
    assert Monitor(build_config(path, environ={})).queues == ["b", "c"]


def test_custom_names_and_thresholds(db: Any) -> None:
    insert(db, priority=10, run_in=-30)  # high
    insert(db, priority=60, run_in=-120)  # low
    insert(db, priority=70, run_in=-10, failed=True)  # low, failed
    names = {"high": 0, "low": 50}
    config = config_for(db, priority_names=names, priority_alerts={"high": {"age": "1m"}})
    got = as_map(Monitor(config).run_once())
    assert {p for (_, p, _) in got} == {"high", "low"}
    assert got[("count", "high", "default")] == 1
    assert got[("count", "low", "default")] == 2
    assert got[("failed_count", "low", "default")] == 1
    assert 50.0 <= got[("alert_age_percent", "high", "default")] < 50.0 + SLACK / 60 * 100
    assert_age(got[("max_age", "low", "default")], 120)
    assert got[("alert_age_percent", "low", "default")] == 0  # no threshold for "low"

    # custom names without priority_alerts: no thresholds at all (as in the Ruby gem)
    got = as_map(Monitor(config_for(db, priority_names=names)).run_once())
    assert got[("alert_age_percent", "high", "default")] == 0
    assert_age(got[("max_age", "high", "default")], 30)


def test_changed_default_threshold(db: Any) -> None:
    insert(db, priority=25, run_in=-1800)  # eventual, 30 min old
    default = as_map(Monitor(config_for(db)).run_once())
    # 1800 s of the default 5400 s
    assert 1800 / 5400 * 100 <= default[("alert_age_percent", "eventual", "default")] < 40
    config = config_for(db, priority_alerts={"eventual": {"age": "1h"}})
    changed = as_map(Monitor(config).run_once())
    assert 50.0 <= changed[("alert_age_percent", "eventual", "default")] < 60


def test_unknown_alert_name_is_refused(db: Any) -> None:
    with pytest.raises(ConfigError, match="unknown priority name"):
        Monitor(config_for(db, priority_alerts={"urgent": {"age": 10}}))


def test_events_inside_the_run_event(db: Any) -> None:
    fill_known_table(db)
    seen: list[events.Event] = []
    pattern = re.compile(r"^delayed\.(monitor\.run|job\.(" + "|".join(METRICS) + "))$")
    unsubscribe = events.subscribe(pattern, seen.append)
    try:
        metrics = Monitor(config_for(db)).run_once()
    finally:
        unsubscribe()
    runs = [e for e in seen if e.name == "delayed.monitor.run"]
    gauges = [e for e in seen if e.name != "delayed.monitor.run"]
    assert len(runs) == 1 and len(gauges) == len(metrics)
    run = runs[0]
    assert run.payload["table"] == "delayed_jobs"
    assert run.payload["database_adapter"] == db.backend
    assert run.duration > 0
    for event, metric in zip(gauges, metrics, strict=True):
        assert event.name == f"delayed.job.{metric.name}"
        assert run.start <= event.start <= run.end
        payload = event.payload
        assert (payload["priority"], payload["queue"], payload["value"]) == (
            metric.priority,
            metric.queue,
            metric.value,
        )
        assert payload["table"] == "delayed_jobs" and payload["database_adapter"] == db.backend
        assert payload["database"]


def test_run_until_stopped_and_outlives_a_broken_database(db: Any, tmp_path: Path) -> None:
    monitor = Monitor(config_for(db), interval=0.05)
    stop = threading.Event()
    thread = threading.Thread(target=monitor.run, args=(stop,))
    thread.start()
    wait_for(lambda: monitor.passes >= 3)
    stop.set()
    thread.join(timeout=60)
    assert not thread.is_alive()

    broken = build_config(environ={}, overrides={"database_url": f"sqlite:///{tmp_path}/no/such/dir/x.db"})
    monitor = Monitor(broken, interval=0.05)
    failures: list[events.Event] = []
    unsubscribe = events.subscribe("delayed.monitor.run", failures.append)
    stop = threading.Event()
    thread = threading.Thread(target=monitor.run, args=(stop,))
    thread.start()
    try:
        wait_for(lambda: len(failures) >= 2)  # it keeps trying
    finally:
        stop.set()
        thread.join(timeout=60)
        unsubscribe()
    assert not thread.is_alive()
    assert monitor.passes == 0 and all(e.error is not None for e in failures)


# ----------------------------------------------------------------------------- the command
