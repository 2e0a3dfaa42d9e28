"""Priority names and alert thresholds; a job's age, run time and alerts, also in event payloads."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import delayed
from delayed import events
from delayed.record import JobRecord
from delayed.timeutil import utcnow
from tests.jobs import observability_jobs, sample_jobs


# ----------------------------------------------------------------------------- Priority
# ----------------------------------------------------------------------------- JobRecord
def record(name: str = "tests.noop", priority: int = 10, **fields: Any) -> JobRecord:
    base: dict[str, Any] = {"id": 1, "priority": priority, "attempts": 0, "handler": "{}", "name": name}
    base.setdefault("run_at", utcnow())
    base.update(fields)
    return JobRecord(**base)


def ago(seconds: float) -> datetime:
    return utcnow() - timedelta(seconds=seconds)


# ----------------------------------------------------------------------------- event payloads
def test_event_payloads_carry_the_alerts(db: Any) -> None:
    seen: dict[str, list[dict[str, Any]]] = {"run": [], "error": []}

    def on(kind: str) -> Any:
        def capture(event: events.Event) -> None:
            job, alerts = event.payload["job"], event.payload["alerts"]
            seen[kind].append(
                {
                    "name": job.name,
                    "age_alert": alerts.age_alert,
                    "run_time_alert": alerts.run_time_alert,
                    "attempts_alert": alerts.attempts_alert,
                    "priority_name": alerts.priority_name,
                }
            )

        return capture

    unsubscribers = [
        events.subscribe("delayed.job.run", on("run")),
        events.subscribe("delayed.job.error", on("error")),
    ]
    try:
        sample_jobs.Noop.perform_later(1)  # user_visible, fresh: no alert
        old = sample_jobs.Noop.perform_later(2)
        db.update(old, run_at=ago(600))  # waited 10 min > 3 min
        observability_jobs.Touchy.perform_later()  # run_time threshold 0
        observability_jobs.Touchy.perform_later(fail=True)  # 1 attempt >= 1
        assert delayed.Worker(max_claims=1).work_off() == (3, 1)
    finally:
        for unsubscribe in unsubscribers:
            unsubscribe()
    runs = {(r["name"], r["age_alert"]): r for r in seen["run"]}
    fresh = runs[("tests.noop", False)]
    assert fresh["run_time_alert"] is False and fresh["attempts_alert"] is False
    assert fresh["priority_name"] == "user_visible"
    assert runs[("tests.noop", True)]["run_time_alert"] is False
    assert all(r["run_time_alert"] is True for r in seen["run"] if r["name"] == "tests.obs.touchy")
    assert [e["name"] for e in seen["error"]] == ["tests.obs.touchy"]
    assert seen["error"][0]["attempts_alert"] is True
