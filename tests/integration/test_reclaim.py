"""The supervisor's reclaim of a dead child's rows, on every database (supervisor/reclaim.py)."""

from __future__ import annotations

import pytest

import delayed
from delayed.backends import ClaimFilter, backend_for
from delayed.supervisor import protocol
from delayed.supervisor.child import Child, Reason
from delayed.supervisor.pools import PoolState
from delayed.supervisor.reclaim import Reclaimer
from delayed.supervisor.settings import Pool
from tests.jobs.sample_jobs import Remember

CHILD = "host:box pid:4242 0badcafe"


@pytest.mark.parametrize("destroy", [False, True], ids=["keep_failed", "destroy_failed_jobs"])
def test_only_the_started_job_counts_an_attempt(db, destroy: bool) -> None:
    """Issue 11 item 4: with max_attempts = 1 the rows that never ran are released, not failed."""
    config = delayed.get_config().replace(max_attempts=1, destroy_failed_jobs=destroy)
    ids = delayed.enqueue_many([Remember.build(token) for token in ("running", "ended", "unstarted")])
    backend = backend_for(db.engine, db.table)
    with backend.connect() as conn:
        claimed = backend.claim(conn, CHILD, 3, ClaimFilter(), config.lock_timeout, 5)
    assert sorted(r.id for r in claimed) == sorted(ids)
    running, ended, unstarted = ids
    # What the master heard: `running` started (not ended); `ended` ended, its delete still
    # queued in the child's completer; of `unstarted`, nothing (claimed, never started).
    child = Child(4242, PoolState.of(Pool("default", 1, 3)), config, -1, 0.0, CHILD, last_seen=0.0)
    child.feed(
        protocol.encode(
            protocol.Started(running, 1.0, 60.0, "t1"),
            protocol.Started(ended, 1.0, 60.0, "t2"),
            protocol.Ended(ended),
        )
    )
    request = child.reclaim(Reason.CRASHED, "was killed by signal SIGKILL", heartbeat_timeout=30.0)
    reclaimer = Reclaimer()
    try:
        reclaimer.submit(request, recheck=False)
    finally:
        reclaimer.dispose()
    assert reclaimer.pending == []
    if destroy:
        assert db.row(running) is None
    else:
        row = db.row(running)
        assert row is not None and row["attempts"] == 1 and row["failed_at"] is not None
        assert row["last_error"].endswith("was killed by signal SIGKILL while running this job")
    for job_id in (ended, unstarted):
        row = db.row(job_id)
        assert row is not None, "a job that never ran (or whose outcome was lost) is never deleted"
        assert (row["attempts"], row["failed_at"], row["locked_by"], row["locked_at"]) == (
            0,
            None,
            None,
            None,
        )
