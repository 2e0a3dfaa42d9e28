"""What becomes of the rows a dead child held: the plan (pure), the reason -> fate table, the writes."""

from __future__ import annotations

import os
import signal
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import delayed
from delayed.config import Config, build_config
from delayed.record import JobRecord
from delayed.supervisor.child import ENDINGS, Child, Fate, Reason, RunningJob
from delayed.supervisor.pools import PoolState
from delayed.supervisor.reclaim import Reclaim, Reclaimer, plan
from delayed.supervisor.settings import Pool

from .conftest import SqliteJobs

NOW = datetime(2026, 12, 1, 12, 0, 0)


class TwiceOnly(delayed.Job, name="unit.reclaim.twice_only"):
    max_attempts = 2

    def perform(self) -> None:  # pragma: no cover - never run here
        pass


def record(job_id: int, attempts: int = 0, name: str = "unit.unknown") -> JobRecord:
    return JobRecord(
        id=job_id,
        priority=0,
        attempts=attempts,
        handler="{}",
        name=name,
        run_at=NOW,
        locked_by="host:h pid:9",
    )


@pytest.fixture
def config() -> Config:
    return build_config(None, environ={})


def test_an_unexplained_death_counts_an_attempt_on_every_row(config: Config) -> None:
    request = Reclaim(9, "host:h pid:9", config, attempt_all="worker process 9 died")
    writes = plan([record(1), record(2, attempts=3)], request, now=NOW)
    assert writes.release == []
    assert [(o.kind, o.id, o.attempts, o.last_error) for o in writes.outcomes] == [
        ("retry", 1, 1, "worker process 9 died"),
        ("retry", 2, 4, "worker process 9 died"),
    ]
    # The retry policy is the worker's: n**4 + 5 seconds after the n-th failure.
    assert writes.outcomes[1].run_at == NOW + timedelta(seconds=4**4 + 5)


def test_a_max_run_time_kill_counts_only_the_overdue_rows(config: Config) -> None:
    request = Reclaim(9, "host:h pid:9", config, attempt={2: "max_run_time of 5 s exceeded"})
    writes = plan([record(1), record(2), record(3)], request, now=NOW)
    assert writes.release == [1, 3]
    assert [(o.id, o.last_error) for o in writes.outcomes] == [(2, "max_run_time of 5 s exceeded")]


def test_a_later_look_only_releases(config: Config) -> None:
    request = Reclaim(9, "host:h pid:9", config, attempt_all="died", recheck=True)
    writes = plan([record(1), record(2)], request, now=NOW)
    assert (writes.outcomes, writes.release) == ([], [1, 2])


def test_a_drained_child_releases_everything(config: Config) -> None:
    writes = plan([record(1), record(2)], Reclaim(9, "w", config), now=NOW)
    assert (writes.outcomes, writes.release) == ([], [1, 2])


def test_the_last_attempt_fails_the_job_by_its_class_or_the_config(config: Config) -> None:
    request = Reclaim(9, "w", config, attempt_all="died")
    by_class = plan([record(1, attempts=1, name=TwiceOnly.job_name)], request, now=NOW).outcomes[0]
    assert (by_class.kind, by_class.attempts, by_class.run_at) == ("fail", 2, None)
    last = config.max_attempts - 1
    by_config = plan([record(2, attempts=last)], request, now=NOW).outcomes[0]
    assert (by_config.kind, by_config.attempts) == ("fail", config.max_attempts)
    destroying = config.replace(destroy_failed_jobs=True)
    gone = plan([record(3, attempts=last)], Reclaim(9, "w", destroying, attempt_all="x"), now=NOW)
    assert gone.outcomes[0].kind == "delete"


def _child(config: Config, killed: list[RunningJob] = ()) -> Child:  # type: ignore[assignment]
    pool = PoolState.of(Pool("default", 1, 2))
    child = Child(9, pool, config, fd=-1, spawned_at=0.0, name="host:h pid:9", last_seen=0.0)
    child.killed_jobs = {job.id: job for job in killed}
    return child


WHO = "worker process 9 (host:h pid:9)"


def test_every_reason_has_an_ending() -> None:
    assert set(ENDINGS) == set(Reason)


@pytest.mark.parametrize(
    ("reason", "attempt_all", "attempt"),
    [
        (Reason.CRASHED, f"{WHO} was killed by signal SIGKILL while running this job", {}),
        (Reason.HEARTBEAT, f"{WHO} sent no heartbeat for 30 s and was killed while running this job", {}),
        (Reason.MAX_RUN_TIME, None, {7: "max_run_time of 2.5 s exceeded"}),
        *[
            (reason, None, {})
            for reason in Reason
            if reason not in (Reason.CRASHED, Reason.HEARTBEAT, Reason.MAX_RUN_TIME)
        ],
    ],
)
def test_the_reason_a_child_ended_decides_its_jobs_fate(
    config: Config, reason: Reason, attempt_all: str | None, attempt: dict[int, str]
) -> None:
    child = _child(config, killed=[RunningJob(7, 0.0, 2.5, "t")])
    request = child.reclaim(reason, "was killed by signal SIGKILL", heartbeat_timeout=30.0)
    assert (request.pid, request.worker, request.config) == (9, "host:h pid:9", config)
    assert (request.attempt_all, request.attempt) == (attempt_all, attempt)
    expected = Fate.ATTEMPT_ALL if attempt_all else Fate.ATTEMPT_OVERDUE if attempt else Fate.RELEASE
    assert ENDINGS[reason].fate is expected


def test_exit_reason_follows_the_state(config: Config) -> None:
    clean, crashed, killed = 0, 3 << 8, signal.SIGKILL
    assert os.WIFSIGNALED(killed) and os.WEXITSTATUS(crashed) == 3
    child = _child(config)
    assert child.exit_reason(clean) is Reason.EXITED
    assert child.exit_reason(crashed) is Reason.CRASHED
    assert child.drain(Reason.RELOAD, deadline=10.0)
    assert child.exit_reason(clean) is Reason.RELOAD
    assert child.exit_reason(crashed) is Reason.CRASHED  # asked to drain, died instead
    assert child.kill(Reason.DRAIN_TIMEOUT, now=11.0)
    assert not child.kill(Reason.QUIT, now=12.0)  # killed once: the first reason stays
    assert child.exit_reason(killed) is Reason.DRAIN_TIMEOUT
    assert child.exit_reason(None) is Reason.ABANDONED


# -- the Reclaimer's writes, on SQLite -------------------------------------------------------
def _config(jobs: SqliteJobs) -> Config:
    return build_config(None, environ={"DELAYED_DATABASE_URL": jobs.url})


def test_the_reclaimer_writes_the_plan_and_reports_it(jobs: SqliteJobs, sup_events: list[Any]) -> None:
    config = _config(jobs)
    overdue, other, not_ours = jobs.add("host:h pid:9"), jobs.add("host:h pid:9"), jobs.add("host:h pid:8")
    reclaimer = Reclaimer()
    reclaimer.submit(Reclaim(9, "host:h pid:9", config, attempt={overdue: "max_run_time of 1 s exceeded"}))
    reclaimer.dispose()
    assert jobs.row(overdue)["attempts"] == 1 and jobs.row(overdue)["locked_by"] is None
    assert jobs.row(overdue)["last_error"] == "max_run_time of 1 s exceeded"
    assert jobs.row(other)["attempts"] == 0 and jobs.row(other)["locked_by"] is None
    assert jobs.row(not_ours)["locked_by"] == "host:h pid:8"
    [event] = sup_events
    assert event.name == "delayed.supervisor.locks_reclaimed"
    assert (event.payload["count"], event.payload["released"], event.payload["attempted"]) == (2, 1, 1)
    # Two later looks are scheduled; they find nothing and report nothing.
    assert [r.recheck for r in reclaimer.pending] == [True, True]
    reclaimer.flush()
    assert len(sup_events) == 1 and reclaimer.pending == []


def test_a_reclaim_the_database_refuses_is_kept_and_retried(tmp_path: Path, jobs: SqliteJobs) -> None:
    config = _config(jobs)
    broken = build_config(None, environ={"DELAYED_DATABASE_URL": f"sqlite:///{tmp_path}/no/such/dir.db"})
    row = jobs.add("host:h pid:9")
    reclaimer = Reclaimer()
    request = Reclaim(9, "host:h pid:9", broken, attempt_all="died")
    reclaimer.submit(request, recheck=False)
    assert reclaimer.pending == [request] and request.tries == 1 and request.next_try > 0
    request.config = config  # the database is back
    reclaimer.retry(request.next_try)
    assert reclaimer.pending == [] and request.tries == 2
    assert jobs.row(row)["attempts"] == 1 and jobs.row(row)["last_error"] == "died"
    reclaimer.dispose()
