"""Named priority ranges: a lower number is picked up first.

Names map to lower bounds (defaults: interactive 0, user_visible 10, eventual 20,
reporting 30); each range runs to the next bound and the last is open. Unlike the Ruby
gem, an unknown name is an error at enqueue, never a silent 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import replace as dataclass_replace
from typing import Any

from .config import Config, get_config
from .errors import ConfigError, UnknownPriorityError
from .record import JobRecord
from .registry import find
from .timeutil import to_seconds


def resolve(value: int | str, names: Mapping[str, int]) -> int:
    """A priority number from a number or a configured name."""
    if isinstance(value, bool):
        raise UnknownPriorityError(f"priority must be a number or a name, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        if value in names:
            return names[value]
        known = ", ".join(f"{n} ({b})" for n, b in names.items())
        raise UnknownPriorityError(f"unknown priority name {value!r}; known names: {known}")
    raise UnknownPriorityError(f"priority must be a number or a name, got {value!r}")


def name_of(priority: int, names: Mapping[str, int]) -> str | None:
    """The name of the range holding `priority`; None below the lowest bound (negative)."""
    found = None
    for name, bound in sorted(names.items(), key=lambda item: item[1]):
        if priority >= bound:
            found = name
    return found


# ----------------------------------------------------------------------------- alert thresholds
DEFAULT_NAMES: dict[str, int] = {"interactive": 0, "user_visible": 10, "eventual": 20, "reporting": 30}


@dataclass(frozen=True)
class AlertThresholds:
    """When a job of one priority deserves attention; None means "no threshold".

    age: seconds a job may wait past its run_at; run_time: seconds it may run;
    attempts: failed attempts it may have.
    """

    age: float | None = None
    run_time: float | None = None
    attempts: int | None = None


DEFAULT_ALERTS: dict[str, AlertThresholds] = {
    "interactive": AlertThresholds(age=60.0, run_time=30.0, attempts=3),
    "user_visible": AlertThresholds(age=180.0, run_time=90.0, attempts=5),
    "eventual": AlertThresholds(age=5400.0, run_time=300.0, attempts=8),
    "reporting": AlertThresholds(age=14400.0, run_time=600.0, attempts=8),
}


def alerts_for(
    names: Mapping[str, int], overrides: Mapping[str, Mapping[str, Any]] | None
) -> dict[str, AlertThresholds]:
    """The thresholds in force for `names`.

    The default names start from DEFAULT_ALERTS; custom names start with no thresholds
    (as in the Ruby gem, where assigning names resets the alerts). `overrides` then change
    the keys they give. An override for a name that is not configured is a ConfigError.
    """
    base = dict(DEFAULT_ALERTS) if dict(names) == DEFAULT_NAMES else {}
    overrides = overrides or {}
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise ConfigError(
            f"[delayed] priority_alerts: unknown priority name(s) {unknown}; "
            f"known names (from priority_names): {', '.join(names)}"
        )
    result: dict[str, AlertThresholds] = {}
    for name in names:
        current = base.get(name, AlertThresholds())
        if name in overrides:
            current = dataclass_replace(current, **overrides[name])
        result[name] = current
    return result


def config_alerts(config: Config) -> dict[str, AlertThresholds]:
    """The thresholds in force under `config`."""
    return alerts_for(config.priority_names, config.priority_alerts)


def bucket_bound(priority: int, names: Mapping[str, int]) -> int:
    """The lower bound of the range `priority` falls in; below every bound, the lowest one.

    This is how the monitor groups rows (negative priorities count as the first name), so
    StatsD names and monitor gauges agree.
    """
    bounds = sorted(names.values())
    found = bounds[0]
    for bound in bounds:
        if priority >= bound:
            found = bound
    return found


def bucket_name(priority: int, names: Mapping[str, int]) -> str:
    """The name of `bucket_bound(priority)`."""
    bound = bucket_bound(priority, names)
    return next(name for name, value in names.items() if value == bound)


class _PriorityMeta(type):
    """Lets `Priority.interactive` (any configured name) build that priority."""

    def __getattr__(cls, name: str) -> Priority:
        if name.startswith("_"):
            raise AttributeError(name)
        if name in get_config().priority_names:
            return cls(name)  # type: ignore[return-value]
        raise AttributeError(f"{cls.__name__} has no attribute or configured priority name {name!r}")


class Priority(int, metaclass=_PriorityMeta):
    """A priority number that knows its name and alert thresholds (Ruby's Delayed::Priority).

    `Priority(15).name == "user_visible"`, `Priority("eventual") == 20`,
    `Priority.interactive.alert_age == 60.0`. It is an int, so it compares, sorts and
    stores like one. Names and thresholds come from `config` (the process's by default),
    read once at construction.
    """

    name: str | None
    alerts: AlertThresholds

    def __new__(cls, value: int | str = 0, config: Any = None) -> Priority:
        if config is None:
            config = get_config()
        names = config.priority_names
        number = resolve(int(value) if isinstance(value, Priority) else value, names)
        self = super().__new__(cls, number)
        self.name = name_of(number, names)
        alerts = config_alerts(config)
        self.alerts = alerts.get(self.name, AlertThresholds()) if self.name else AlertThresholds()
        self._config = config
        return self

    @property
    def alert_age(self) -> float | None:
        return self.alerts.age

    @property
    def alert_run_time(self) -> float | None:
        return self.alerts.run_time

    @property
    def alert_attempts(self) -> int | None:
        return self.alerts.attempts

    def __repr__(self) -> str:
        return f"Priority({int(self)}, {self.name!r})"

    def __add__(self, other: Any) -> Any:
        result = int(self) + other
        return Priority(result, self._config) if isinstance(result, int) else result

    def __sub__(self, other: Any) -> Any:
        result = int(self) - other
        return Priority(result, self._config) if isinstance(result, int) else result

    def __reduce__(self) -> Any:
        return (int, (int(self),))


# ----------------------------------------------------------------------------- a job's alerts
@dataclass(frozen=True)
class JobAlerts:
    """A row's priority name and alert state (Ruby's `Delayed::Job#age_alert?` and friends).

    Thresholds come from the job class (`alert_age`, `alert_run_time`, `alert_attempts`),
    else from the row's priority name; each is None when neither sets one. Computed on
    access, so an event payload carrying this costs nothing until a subscriber reads it.
    """

    record: JobRecord
    names: Mapping[str, int]
    thresholds: Mapping[str, AlertThresholds]

    @property
    def priority_name(self) -> str | None:
        """The configured name of the row's priority range (None below the lowest bound)."""
        return name_of(self.record.priority, self.names)

    def _threshold(self, key: str) -> float | int | None:
        job_class = find(self.record.name)
        own = getattr(job_class, f"alert_{key}", None) if job_class is not None else None
        if own is not None:
            return own if key == "attempts" else to_seconds(own)
        name = self.priority_name
        found = self.thresholds.get(name) if name is not None else None
        return getattr(found, key) if found is not None else None

    @property
    def alert_age(self) -> float | None:
        """The job class's `alert_age`, else its priority's threshold, else None."""
        return self._threshold("age")  # type: ignore[return-value]

    @property
    def alert_run_time(self) -> float | None:
        """The job class's `alert_run_time`, else its priority's threshold, else None."""
        return self._threshold("run_time")  # type: ignore[return-value]

    @property
    def alert_attempts(self) -> int | None:
        """The job class's `alert_attempts`, else its priority's threshold, else None."""
        return self._threshold("attempts")  # type: ignore[return-value]

    @property
    def age_alert(self) -> bool | None:
        """True when the job waited at least `alert_age`; None without a threshold."""
        threshold = self.alert_age
        return None if threshold is None else threshold <= self.record.age

    @property
    def run_time_alert(self) -> bool | None:
        """True when the job has run at least `alert_run_time`; None without a threshold or lock."""
        threshold, run_time = self.alert_run_time, self.record.run_time
        return None if threshold is None or run_time is None else threshold <= run_time

    @property
    def attempts_alert(self) -> bool | None:
        """True when the job has at least `alert_attempts` attempts; None without a threshold."""
        threshold = self.alert_attempts
        return None if threshold is None else threshold <= self.record.attempts


def job_alerts(record: JobRecord, config: Config | None = None) -> JobAlerts:
    """The alert state of `record` under `config` (the process's by default)."""
    config = get_config() if config is None else config
    return JobAlerts(record, config.priority_names, config_alerts(config))
