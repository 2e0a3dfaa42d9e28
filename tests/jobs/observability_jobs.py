"""Job classes for the StatsD, monitor and alert tests (`--require observability_jobs`)."""

from __future__ import annotations

import delayed
from delayed.registry import lookup


class Spawn(delayed.Job, name="tests.obs.spawn"):
    """Enqueues a far-future Noop from inside a worker, so the worker emits an enqueue timing."""

    def perform(self) -> None:
        lookup("tests.noop").set(wait=3600).perform_later("spawned")


class Touchy(delayed.Job, name="tests.obs.touchy"):
    """Alerts at once on run time, after one attempt, and after a second of waiting."""

    alert_age = 1
    alert_run_time = 0
    alert_attempts = 1

    def perform(self, fail: bool = False) -> None:
        if fail:
            raise RuntimeError("touchy failed")


class Patient(delayed.Job, name="tests.obs.patient"):
    """Overrides only the run-time threshold, as a duration string."""

    priority = "interactive"
    alert_run_time = "1h"

    def perform(self) -> None:
        pass
