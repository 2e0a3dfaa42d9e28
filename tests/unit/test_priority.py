"""Priority names and alert thresholds; a job's age, run time and alerts, also in event payloads."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import delayed
from delayed.config import build_config, set_config
from delayed.errors import ConfigError, UnknownPriorityError
from delayed.priority import DEFAULT_ALERTS, AlertThresholds, Priority, alerts_for, job_alerts
from delayed.record import JobRecord
from delayed.timeutil import utcnow
from tests.jobs import observability_jobs  # noqa: F401 - registers tests.obs.touchy and tests.obs.patient
from tests.statsd_helpers import write_toml

DEFAULT = {"interactive": 0, "user_visible": 10, "eventual": 20, "reporting": 30}


@pytest.fixture
def config_scope() -> Any:
    """Set a process config for one test and restore the defaults after."""

    def use(**overrides: Any) -> Any:
        return set_config(build_config(environ={}, overrides=overrides))

    yield use
    set_config(build_config(environ={}))


# ----------------------------------------------------------------------------- Priority
def test_priority_names_and_defaults(config_scope: Any) -> None:
    config_scope()
    expected = {
        0: ("interactive", 60.0, 30.0, 3),
        9: ("interactive", 60.0, 30.0, 3),
        10: ("user_visible", 180.0, 90.0, 5),
        19: ("user_visible", 180.0, 90.0, 5),
        20: ("eventual", 5400.0, 300.0, 8),
        30: ("reporting", 14400.0, 600.0, 8),
        1000: ("reporting", 14400.0, 600.0, 8),
    }
    for value, (name, age, run_time, attempts) in expected.items():
        priority = Priority(value)
        assert priority == value and isinstance(priority, int)
        assert (priority.name, priority.alert_age, priority.alert_run_time, priority.alert_attempts) == (
            name,
            age,
            run_time,
            attempts,
        )
    negative = Priority(-1)
    assert negative.name is None and negative.alert_age is None
    assert Priority("eventual") == 20 and Priority.eventual == 20 and Priority.reporting.name == "reporting"
    assert repr(Priority(12)) == "Priority(12, 'user_visible')"
    assert (Priority(5) + 10).name == "user_visible" and isinstance(Priority(25) - 10, Priority)
    assert sorted([Priority(30), 5, Priority(10)]) == [5, 10, 30] and Priority(5) < 8
    with pytest.raises(UnknownPriorityError, match="urgent"):
        Priority("urgent")
    with pytest.raises(AttributeError):
        _ = Priority.urgent
    assert delayed.Priority is Priority


def test_custom_names_reset_alerts_unless_given(config_scope: Any) -> None:
    config_scope(priority_names={"high": 0, "low": 100})
    assert Priority(50).name == "high" and Priority(100).name == "low"
    assert Priority.high.alert_age is None and Priority.low.alert_attempts is None
    config_scope(
        priority_names={"high": 0, "low": 100}, priority_alerts={"low": {"age": "2h", "attempts": 4}}
    )
    assert (Priority.low.alert_age, Priority.low.alert_run_time, Priority.low.alert_attempts) == (
        7200.0,
        None,
        4,
    )
    assert Priority.high.alert_age is None


def test_default_names_override_by_key(config_scope: Any) -> None:
    config_scope(priority_alerts={"interactive": {"age": "2m"}, "reporting": {"run_time": False}})
    assert (Priority.interactive.alert_age, Priority.interactive.alert_run_time) == (120.0, 30.0)
    assert Priority.reporting.alert_run_time is None and Priority.reporting.alert_age == 14400.0
    assert Priority.eventual.alerts == DEFAULT_ALERTS["eventual"]


def test_alert_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown priority name"):
        alerts_for(DEFAULT, {"urgent": {"age": 1}})
    assert alerts_for({"a": 0}, None) == {"a": AlertThresholds()}
    bad = {
        "age": {"interactive": {"age": "soon"}},
        "attempts": {"interactive": {"attempts": 1.5}},
        "unknown key 'agee'": {"interactive": {"agee": 1}},
        "expected a table": {"interactive": 5},
    }
    for message, alerts in bad.items():
        path = write_toml(tmp_path / "bad.toml", {"delayed": {"priority_alerts": alerts}})
        with pytest.raises(ConfigError, match=r"priority_alerts.*" + message):
            build_config(path, environ={})
    path = write_toml(
        tmp_path / "good.toml",
        {"delayed": {"priority_alerts": {"eventual": {"age": "1.5h", "run_time": 60, "attempts": 2}}}},
    )
    config = build_config(path, environ={})
    assert alerts_for(config.priority_names, config.priority_alerts)["eventual"] == AlertThresholds(
        5400.0, 60.0, 2
    )


# ----------------------------------------------------------------------------- JobRecord
def record(name: str = "tests.noop", priority: int = 10, **fields: Any) -> JobRecord:
    base: dict[str, Any] = {"id": 1, "priority": priority, "attempts": 0, "handler": "{}", "name": name}
    base.setdefault("run_at", utcnow())
    base.update(fields)
    return JobRecord(**base)


def ago(seconds: float) -> datetime:
    return utcnow() - timedelta(seconds=seconds)


def test_age_and_run_time(config_scope: Any) -> None:
    config_scope()
    waiting = record(run_at=ago(100))
    assert 100 <= waiting.age < 160 and waiting.run_time is None
    picked = record(run_at=ago(100), locked_at=ago(40))
    assert picked.age == pytest.approx(60, abs=0.01)  # stops at pickup
    assert 40 <= picked.run_time < 100
    future = record(run_at=ago(-3600))
    assert future.age == 0  # never negative
    assert job_alerts(record(priority=25)).priority_name == "eventual"


def test_alerts_from_priority(config_scope: Any) -> None:
    config_scope()
    # user_visible: age 180 s, run_time 90 s, attempts 5
    fresh = job_alerts(record(run_at=ago(10), locked_at=ago(5), attempts=4))
    assert (fresh.age_alert, fresh.run_time_alert, fresh.attempts_alert) == (False, False, False)
    stale = job_alerts(record(run_at=ago(400), locked_at=ago(100), attempts=5))
    assert (stale.age_alert, stale.run_time_alert, stale.attempts_alert) == (True, True, True)
    assert job_alerts(record(run_at=ago(10))).run_time_alert is None  # not locked
    assert job_alerts(record(priority=-3)).age_alert is None  # no name, no threshold
    config_scope(priority_names={"only": 0})
    assert job_alerts(record(run_at=ago(10_000))).age_alert is None


def test_alerts_from_the_job_class(config_scope: Any) -> None:
    config_scope()
    touchy = job_alerts(record("tests.obs.touchy", run_at=ago(2), locked_at=ago(0.5), attempts=1))
    assert (touchy.alert_age, touchy.alert_run_time, touchy.alert_attempts) == (1.0, 0.0, 1)
    assert (touchy.age_alert, touchy.run_time_alert, touchy.attempts_alert) == (True, True, True)
    patient = job_alerts(
        record("tests.obs.patient", priority=0, run_at=ago(100), locked_at=ago(60), attempts=3)
    )
    assert patient.alert_run_time == 3600.0 and patient.run_time_alert is False
    assert patient.alert_age == 60.0 and patient.age_alert is False  # waited 40 s of 60 s
    assert patient.attempts_alert is True  # interactive: 3 attempts
    unknown = job_alerts(record("tests.not_registered", priority=20, attempts=8))
    assert unknown.attempts_alert is True  # priority thresholds still apply


# ----------------------------------------------------------------------------- event payloads
