"""Issue 12 with real processes on PostgreSQL: a dead host's jobs rescued by another, PgBouncer.

- two supervisors as two "hosts" (each child has its own registry name); one is SIGKILLed
  whole (master and children: no drain, no reclaim by its own master); every job it held runs
  to completion on the other within worker_timeout + one rescue interval + the job's run time,
  and no job ran twice while its first owner was alive;
- `delayed work --exit-on-complete` drains a table through a real PgBouncer in transaction
  pooling mode ([delayed] pooler = "transaction"), and so does a supervisor that loses a
  child mid-job (the supervisor test of tests/acceptance/test_supervisor.py, through it).

Small settings: heartbeat_interval 1 s, worker_timeout 5 s (rescue every 1.25 s).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.acceptance.test_supervisor import Sup, dump, runs, tokens
from tests.helpers import run_delayed, subprocess_env, wait_for
from tests.jobs.supervisor_jobs import RUNS_DDL, Run, RunRetriedAtOnce

pytestmark = pytest.mark.slow

HEARTBEAT, TIMEOUT = 1.0, 5.0
RESCUE_INTERVAL = TIMEOUT / 4
RUN_TIME = 3.0
FAST = {"heartbeat_interval": HEARTBEAT, "worker_timeout": TIMEOUT, "sleep_delay": 0.2}


@pytest.fixture
def hosts(pg, tmp_path: Path) -> Iterator[Any]:
    """Supervisors in their own directories (two "hosts"); all killed with their children after."""
    with pg.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS sup_runs")
        conn.exec_driver_sql(RUNS_DDL)
    made: list[Sup] = []

    def make(name: str, url: str, supervisor: dict[str, Any], **delayed: Any) -> Sup:
        directory = tmp_path / name
        directory.mkdir()
        sup = Sup(directory, url, supervisor, delayed={**FAST, **delayed})
        made.append(sup)
        return sup

    yield make
    for sup in made:
        sup.cleanup()


def _registry_names(pg) -> list[str]:
    with pg.engine.connect() as conn:
        return list(conn.execute(sa.text("SELECT name FROM delayed_workers")).scalars())


def test_a_killed_hosts_jobs_run_on_the_other_host_within_the_timeout(hosts, pg) -> None:
    a = hosts("host_a", pg.url, {"workers": 1, "max_claims": 2}).start()
    wait_for(lambda: len(a.children()) == 1, timeout=60)
    for i in range(2):
        RunRetriedAtOnce.perform_later(f"a{i}", sleep=RUN_TIME)
    wait_for(lambda: len(tokens(pg, "start")) == 2, timeout=60)
    b = hosts("host_b", pg.url, {"workers": 1, "max_claims": 2}).start()
    wait_for(lambda: len(b.children()) == 1 and len(_registry_names(pg)) == 2, timeout=60)
    a_pids = set(a.children())
    held = {r["token"] for r in runs(pg) if r["pid"] in a_pids and r["phase"] == "start"}
    assert held == {"a0", "a1"}, dump(a, pg)
    killed_at = time.time()
    a.cleanup()  # SIGKILL to the master and its children at once: no drain, no reclaim
    wait_for(lambda: set(tokens(pg, "end")) >= held, timeout=60, interval=0.1)
    b_pids = set(b.children())
    ends = {r["token"]: r for r in runs(pg) if r["phase"] == "end"}
    for token in held:
        assert ends[token]["pid"] in b_pids, dump(b, pg)
        # The bound of issue 12 (a second of slack for the claim poll and a loaded machine).
        took = ends[token]["at"] - killed_at
        assert took < TIMEOUT + RESCUE_INTERVAL + RUN_TIME + 2 * HEARTBEAT + 1.0, (took, dump(b, pg))
    # Nothing ran twice while its first owner was alive: every second start came after the kill.
    for token in held:
        starts = sorted(r["at"] for r in runs(pg) if r["token"] == token and r["phase"] == "start")
        assert len(starts) == 2 and starts[0] < killed_at < starts[1], starts
    text = b.log()
    assert "rescued 2 job(s) of worker host:" in text, text
    assert pg.count() == 0
    rescued_row_attempts = [r["attempts"] for r in runs(pg) if r["phase"] == "start" and r["pid"] in b_pids]
    assert rescued_row_attempts == [1, 1], "each rescued job counted the attempt its dead host made"
    assert len(_registry_names(pg)) == 1, "the dead child's registry row was removed"


def test_a_drain_through_pgbouncer_in_transaction_mode(pg, pgbouncer) -> None:
    with pg.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS sup_runs")
        conn.exec_driver_sql(RUNS_DDL)
    for i in range(40):
        Run.perform_later(f"d{i}")
    env = subprocess_env(pgbouncer.url(pg.url), DELAYED_POOLER="transaction", **_fast_env())
    result = run_delayed(
        "work", "--require", "supervisor_jobs", "--exit-on-complete", "--max-claims", "4", env=env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert pg.count() == 0
    assert sorted(tokens(pg, "end")) == sorted(f"d{i}" for i in range(40))
    assert "prepared statement" not in result.stderr and "LISTEN" not in result.stderr, result.stderr[-3000:]


def _fast_env() -> dict[str, str]:
    return {"DELAYED_HEARTBEAT_INTERVAL": str(HEARTBEAT), "DELAYED_WORKER_TIMEOUT": str(TIMEOUT)}


def test_a_supervisor_through_pgbouncer_loses_no_job_when_a_child_is_killed(hosts, pg, pgbouncer) -> None:
    total = 12
    for i in range(total):
        Run.perform_later(f"k{i}", sleep=1.0)
    sup = hosts("bounced", pgbouncer.url(pg.url), {"workers": 2, "max_claims": 2}, pooler="transaction")
    sup.start()
    wait_for(lambda: len(sup.children()) == 2, timeout=60)
    victim_token = wait_for(lambda: next(iter(set(tokens(pg, "start")) - set(tokens(pg, "end"))), None))
    victim = next(r["pid"] for r in runs(pg) if r["token"] == victim_token)
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: pg.count() == 0, timeout=120, interval=0.2)
    assert set(tokens(pg, "end")) == {f"k{i}" for i in range(total)}, dump(sup, pg)
    assert tokens(pg, "start").count(victim_token) >= 2, "the killed job ran again"
    assert f"child {victim} (pool default) was killed by signal SIGKILL" in sup.log()
    sup.signal(signal.SIGTERM)
    assert sup.wait() == 0, dump(sup, pg)
    assert "prepared statement" not in sup.log(), dump(sup, pg)
