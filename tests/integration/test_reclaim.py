"""The supervisor's reclaim of a dead child's rows, and the names rows are locked by, on every database."""

from __future__ import annotations

import os
import re
import socket
import threading

import pytest

import delayed
from delayed.backends import ClaimFilter, backend_for
from delayed.supervisor import protocol
from delayed.supervisor.child import Child, Reason
from delayed.supervisor.pools import PoolState
from delayed.supervisor.reclaim import Reclaimer
from delayed.supervisor.settings import Pool
from delayed.worker import Worker, default_worker_name
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
    child = Child(4242, PoolState.of(Pool("default", 1, 3)), config, -1, 0.0, last_seen=0.0, name=CHILD)
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


def test_same_host_and_pid_in_two_containers_never_touch_each_others_locks(db, monkeypatch) -> None:
    """Issue 11 item 6: two containers, same hostname, own pid namespaces: still two names."""
    with monkeypatch.context() as same:
        same.setattr(socket, "gethostname", lambda: "web-7f9c")
        same.setattr(os, "getpid", lambda: 1)
        ours, theirs = default_worker_name(), default_worker_name()
    assert ours != theirs
    for name in (ours, theirs):
        assert re.fullmatch(r"host:web-7f9c pid:1 [0-9a-f]{8}", name), name
    config = delayed.get_config()
    mine, other = delayed.enqueue_many([Remember.build("mine"), Remember.build("theirs")])
    backend = backend_for(db.engine, db.table)
    with backend.connect() as conn:
        assert [r.id for r in backend.claim(conn, ours, 1, ClaimFilter(), config.lock_timeout, 5)] == [mine]
        assert [r.id for r in backend.claim(conn, theirs, 1, ClaimFilter(), config.lock_timeout, 5)] == [
            other
        ]
    # Our worker's release of rows it does not know it holds (after a failed pickup) ...
    Worker(name=ours, config=config)._release_orphans()
    assert db.row(mine)["locked_by"] is None
    assert db.row(other)["locked_by"] == theirs
    # ... and our supervisor's reclaim of our dead child: the other container's lock stays.
    with backend.connect() as conn:
        backend.claim(conn, ours, 1, ClaimFilter(), config.lock_timeout, 5)
    child = Child(1, PoolState.of(Pool("default", 1, 1)), config, -1, 0.0, last_seen=0.0, name=ours)
    reclaimer = Reclaimer()
    try:
        reclaimer.submit(child.reclaim(Reason.CRASHED, "died", heartbeat_timeout=30.0), recheck=False)
    finally:
        reclaimer.dispose()
    assert db.row(mine)["locked_by"] is None and db.row(mine)["attempts"] == 0
    assert db.row(other)["locked_by"] == theirs and db.row(other)["attempts"] == 0


def test_releases_never_wait_on_rows_other_workers_hold(db) -> None:
    """Issue 11 item 7: on MySQL an orphan release (`locked_by = me AND id NOT IN (...)`) scans
    rows without an index on locked_by; at REPEATABLE READ it waited on a row another worker's
    open transaction held (error 1205, the claim skipped). Releases now run on the backend's
    write connection (READ COMMITTED on MySQL), which skips rows that do not match."""
    config = delayed.get_config()
    ours = default_worker_name()
    mine, _other = delayed.enqueue_many([Remember.build("mine"), Remember.build("theirs")])
    backend = backend_for(db.engine, db.table)
    with backend.connect() as conn:
        assert [r.id for r in backend.claim(conn, ours, 1, ClaimFilter(), config.lock_timeout, 5)] == [mine]
    if db.backend == "sqlite":  # one writer: a second open write transaction would be the test's own deadlock
        Worker(name=ours, config=config)._release_orphans()
        assert db.row(mine)["locked_by"] is None
        return
    t = db.table
    with db.engine.connect() as holder:
        holder.begin()
        holder.execute(t.update().where(t.c.id == _other).values(locked_by="another worker"))
        release = threading.Thread(target=Worker(name=ours, config=config)._release_orphans, daemon=True)
        release.start()
        release.join(timeout=20)  # blocked on the holder's row: it would wait until the rollback
        waited = release.is_alive()
        holder.rollback()
        release.join()
    assert not waited, "the release waited on a row another worker's transaction holds"
    assert db.row(mine)["locked_by"] is None
