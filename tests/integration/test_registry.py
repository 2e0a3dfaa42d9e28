"""Issue 12: the worker registry, the rescue of a dead worker's jobs and fencing, on every database."""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

import delayed
from delayed import events, statsd
from delayed.backends import ClaimFilter, backend_for
from delayed.cli import main
from delayed.errors import ConfigError
from delayed.rescue import Rescuer
from delayed.schema import workers_table
from delayed.supervisor.reclaim import Reclaim, Reclaimer
from delayed.timeutil import utcnow
from delayed.worker import Worker
from delayed.workers import list_workers
from tests.helpers import wait_for
from tests.jobs.sample_jobs import Remember, Sleep
from tests.statsd_helpers import UdpListener

FAST = {"heartbeat_interval": 0.2, "worker_timeout": 1.0, "sleep_delay": 0.1}


def _registry(db: Any) -> list[dict[str, Any]]:
    w = workers_table()
    with db.engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(w).order_by(w.c.name)).mappings()]


def _dead_worker(db: Any, name: str, age: float = 3600.0) -> None:
    """A registry row whose last heartbeat was `age` seconds ago (as a killed host leaves it)."""
    then = utcnow() - timedelta(seconds=age)
    with db.engine.begin() as conn:
        conn.execute(
            workers_table()
            .insert()
            .values(
                name=name,
                hostname="gone",
                pid=4242,
                pool="default",
                queues="[]",
                started_at=then,
                heartbeat_at=then,
            )
        )


def _claim(db: Any, name: str, count: int) -> list[int]:
    backend = backend_for(db.engine, db.table)
    with backend.connect() as conn:
        return [r.id for r in backend.claim(conn, name, count, ClaimFilter(), 1230.0, 5)]


def _run_in_thread(worker: Worker) -> threading.Thread:
    thread = threading.Thread(target=worker.run, kwargs={"install_signals": False}, daemon=True)
    thread.start()
    return thread


def test_worker_registers_beats_and_leaves(db) -> None:
    config = delayed.get_config().replace(**FAST, queues=["a", "b"])
    worker = Worker(config=config, pool="mail")
    thread = _run_in_thread(worker)
    try:
        wait_for(lambda: _registry(db), timeout=10)
        [row] = _registry(db)
        assert row["name"] == worker.name
        assert (row["pid"], row["pool"], json.loads(row["queues"])) == (os.getpid(), "mail", ["a", "b"])
        first = row["heartbeat_at"]
        wait_for(lambda: _registry(db)[0]["heartbeat_at"] > first, timeout=5)
        [info] = list_workers(config)
        assert (info.name, info.jobs, info.dead) == (worker.name, 0, False)
        assert 0 <= info.heartbeat_age < 1.0
    finally:
        worker.stop()
        thread.join(10)
    assert _registry(db) == [], "a clean exit deletes the row"


def test_rescue_releases_a_dead_workers_jobs_with_an_attempt(db) -> None:
    config = delayed.get_config().replace(worker_timeout=5.0, heartbeat_interval=1.0)
    ids = delayed.enqueue_many([Remember.build(n) for n in range(3)])
    _dead_worker(db, "host:gone pid:4242 deadbeef")
    dead_ids = _claim(db, "host:gone pid:4242 deadbeef", 2)
    alive_id = _claim(db, "host:here pid:1 0000aaaa", 1)[0]
    _dead_worker(db, "host:here pid:1 0000aaaa", age=0.0)  # alive: heartbeat just now
    seen: list[events.Event] = []
    unsubscribe = events.subscribe("delayed.worker.rescued", seen.append)
    try:
        backend = backend_for(db.engine, db.table)
        rescued = Rescuer(backend, workers_table(), config, "rescuer-1").run_once()
    finally:
        unsubscribe()
    assert [(r.worker, sorted(r.ids)) for r in rescued] == [("host:gone pid:4242 deadbeef", sorted(dead_ids))]
    for job_id in dead_ids:
        row = db.row(job_id)
        assert row is not None
        lock = (row["locked_by"], row["locked_at"], row["attempts"], row["failed_at"])
        assert lock == (None, None, 1, None)
        for part in ("Rescued", "deadbeef", "rescuer-1"):
            assert part in row["last_error"]
        assert row["run_at"] > utcnow(), "a retry waits out the back-off, as after a crash"
    assert db.row(alive_id)["locked_by"] == "host:here pid:1 0000aaaa", "a live worker's row is not touched"
    assert [r["name"] for r in _registry(db)] == ["host:here pid:1 0000aaaa"]
    assert len(seen) == 1 and sorted(seen[0].payload["ids"]) == sorted(dead_ids)
    assert seen[0].payload["rescuer"] == "rescuer-1"
    assert set(ids) >= set(dead_ids)


def test_rescue_fails_a_job_at_max_attempts(db) -> None:
    config = delayed.get_config().replace(worker_timeout=5.0, heartbeat_interval=1.0, max_attempts=1)
    delayed.enqueue_many([Remember.build("last")])
    _dead_worker(db, "host:gone pid:1 00000001")
    [job_id] = _claim(db, "host:gone pid:1 00000001", 1)
    Rescuer(backend_for(db.engine, db.table), workers_table(), config, "r").run_once()
    row = db.row(job_id)
    assert row["failed_at"] is not None and row["attempts"] == 1 and row["locked_by"] is None


def test_two_rescuers_take_each_dead_worker_once(db) -> None:
    config = delayed.get_config().replace(worker_timeout=5.0, heartbeat_interval=1.0)
    delayed.enqueue_many([Remember.build(n) for n in range(4)])
    names = [f"host:gone pid:{n} 0000000{n}" for n in range(4)]
    for name in names:
        _dead_worker(db, name)
        _claim(db, name, 1)
    backend = backend_for(db.engine, db.table)
    results: list[list[str]] = []

    def rescue(tag: str) -> None:
        results.append([r.worker for r in Rescuer(backend, workers_table(), config, tag).run_once()])

    threads = [threading.Thread(target=rescue, args=(f"r{n}",)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    taken = sorted(name for result in results for name in result)
    assert taken == sorted(names), "every dead worker rescued exactly once"
    assert all(row["attempts"] == 1 for row in db.rows())


def test_a_rescued_worker_takes_a_new_name_and_never_touches_the_reclaimed_row(db) -> None:
    """Fencing by generation: after its row was rescued, the old name's outcome changes nothing."""
    config = delayed.get_config().replace(**FAST)
    [job_id] = delayed.enqueue_many([Sleep.build(1.5, token="slow")])
    worker = Worker(config=config)
    fenced: list[float] = []
    worker.on_fenced = lambda: fenced.append(time.monotonic())
    thread = _run_in_thread(worker)
    try:
        wait_for(lambda: db.row(job_id)["locked_by"] is not None, timeout=10)
        old = worker.name
        # The heartbeat stalls (as if cut off): age the row, and rescue it as another host would.
        w = workers_table()
        with db.engine.begin() as conn:
            conn.execute(w.update().where(w.c.name == old).values(heartbeat_at=utcnow() - timedelta(hours=1)))
        Rescuer(backend_for(db.engine, db.table), w, config, "other-host").run_once()
        assert db.row(job_id)["locked_by"] is None
        # Another host claims it (as its claim would, past the back-off).
        other = "host:other pid:2 0000bbbb"
        t = db.table
        with db.engine.begin() as conn:
            claimed = conn.execute(
                t.update()
                .where(t.c.id == job_id, t.c.locked_by.is_(None))
                .values(locked_by=other, locked_at=utcnow())
            ).rowcount
        assert claimed == 1
        wait_for(lambda: worker.name != old, timeout=5)
        wait_for(lambda: fenced, timeout=5)
        wait_for(lambda: worker.busy == 0, timeout=10)
        worker._completer.flush(5)
        row = db.row(job_id)
        assert row is not None and row["locked_by"] == other, "the old owner's delete touched nothing"
        assert [r["name"] for r in _registry(db)] == [worker.name], "registered again under the new name"
    finally:
        worker.stop()
        thread.join(10)


def test_a_worker_without_heartbeat_stops_claiming(row_locking_db) -> None:
    """Fencing: with the registry row locked by someone else the heartbeat cannot be written, and
    after worker_timeout / 2 the worker claims nothing although its claims would work. (Not on
    SQLite: no row locks to hold a heartbeat back; its one writer is covered by the others.)"""
    db = row_locking_db
    config = delayed.get_config().replace(heartbeat_interval=0.2, worker_timeout=2.0, sleep_delay=0.1)
    worker = Worker(config=config)
    fenced: list[events.Event] = []
    unsubscribe = events.subscribe("delayed.worker.fenced", fenced.append)
    thread = _run_in_thread(worker)
    holder = db.engine.connect()
    try:
        wait_for(lambda: _registry(db), timeout=10)
        w = workers_table()
        holder.begin()
        holder.execute(sa.select(w).where(w.c.name == worker.name).with_for_update())
        wait_for(lambda: fenced, timeout=5)
        [job_id] = delayed.enqueue_many([Remember.build("after fencing")])
        time.sleep(0.5)
        assert db.row(job_id)["locked_by"] is None, "a fenced worker claims nothing"
        holder.rollback()
        wait_for(lambda: db.row(job_id) is None, timeout=10)  # heartbeat back: claims again
    finally:
        unsubscribe()
        holder.close()
        worker.stop()
        thread.join(10)


def test_worker_timeout_must_exceed_two_heartbeats() -> None:
    with pytest.raises(ConfigError, match=r"worker_timeout 20 s .* exceed twice heartbeat_interval 10 s"):
        delayed.config.build_config(environ={}, overrides={"worker_timeout": 20})
    delayed.config.build_config(environ={}, overrides={"heartbeat_interval": 0, "worker_timeout": 1})


def test_workers_command_lists_json(db) -> None:
    _dead_worker(db, "host:gone pid:7 00000007")
    delayed.enqueue_many([Remember.build(1)])
    _claim(db, "host:gone pid:7 00000007", 1)
    result = CliRunner().invoke(main, ["workers", "--json", "--database-url", db.url])
    assert result.exit_code == 0, result.output
    [info] = json.loads(result.output)
    assert (info["name"], info["hostname"], info["pid"], info["jobs"], info["dead"]) == (
        "host:gone pid:7 00000007",
        "gone",
        4242,
        1,
        True,
    )
    assert info["heartbeat_age"] > 3000
    text = CliRunner().invoke(main, ["workers", "--database-url", db.url])
    assert text.exit_code == 0 and "DEAD" in text.output and "host:gone pid:7" in text.output


def test_rescue_counts_in_statsd(db) -> None:
    with UdpListener() as listener:
        config = delayed.get_config().replace(worker_timeout=5.0, heartbeat_interval=1.0)
        settings = {"host": "127.0.0.1", "port": listener.port, "prefix": "", "sample_rate": 1.0}
        config = config.with_section("statsd", **settings)
        statsd.install(config)
        try:
            delayed.enqueue_many([Remember.build(n) for n in range(2)])
            _dead_worker(db, "host:gone pid:9 00000009")
            _claim(db, "host:gone pid:9 00000009", 2)
            Rescuer(backend_for(db.engine, db.table), workers_table(), config, "r").run_once()
            listener.wait_for_lines(lambda got: {"worker.rescued:1|c", "worker.rescued_jobs:2|c"} <= set(got))
        finally:
            statsd.uninstall()


def _terminate_heartbeats(pg: Any, table: str) -> int:
    """pg_terminate_backend every session whose statement is a heartbeat of `table` (found in
    pg_stat_activity by its query; never this session)."""
    with pg.engine.connect() as conn:
        return len(
            conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE pid <> pg_backend_pid() AND query LIKE :pattern"
                ),
                {"pattern": f"UPDATE {table} SET heartbeat_at%"},
            ).all()
        )


def test_a_worker_whose_heartbeat_session_is_cut_stops_claiming_before_its_jobs_are_rescued(pg) -> None:
    """The victim's claims still work; only its heartbeat cannot be written: its registry row is
    held by another transaction and its heartbeat session is terminated again and again. It
    stops claiming (worker_timeout / 2) before another host rescues its job (worker_timeout)."""
    config = delayed.get_config().replace(heartbeat_interval=0.5, worker_timeout=3.0, sleep_delay=0.1)
    [slow] = delayed.enqueue_many([Sleep.build(30, token="victim")])
    victim = Worker(config=config)
    fenced_exits: list[float] = []
    victim.on_fenced = lambda: fenced_exits.append(time.monotonic())
    fenced: list[float] = []
    unsubscribe = events.subscribe("delayed.worker.fenced", lambda _e: fenced.append(time.monotonic()))
    thread = _run_in_thread(victim)
    holder = pg.engine.connect()
    try:
        wait_for(lambda: pg.row(slow)["locked_by"] == victim.name, timeout=10)
        w = workers_table()
        holder.begin()
        holder.execute(sa.select(w).where(w.c.name == victim.name).with_for_update())
        cut_at = time.monotonic()
        kills = 0
        while time.monotonic() - cut_at < config.worker_timeout + 0.5:
            kills += _terminate_heartbeats(pg, w.name)
            time.sleep(0.1)
        assert kills >= 2, "the heartbeat session was found and cut more than once"
        assert fenced and fenced[0] - cut_at <= config.worker_timeout / 2 + 1.0, (fenced, cut_at)
        [late] = delayed.enqueue_many([Remember.build("enqueued while fenced")])
        time.sleep(0.5)
        assert pg.row(late)["locked_by"] is None, "the fenced worker claims nothing"
        # Another host's rescue: let go of the row right after cutting the heartbeat once more.
        _terminate_heartbeats(pg, w.name)
        holder.rollback()
        rescued = Rescuer(backend_for(pg.engine, pg.table), w, config, "other-host").run_once()
        rescued_at = time.monotonic()
        assert [r.ids for r in rescued] == [[slow]]
        assert fenced[0] < rescued_at - config.worker_timeout / 2 + 1.0
        wait_for(lambda: fenced_exits, timeout=5)  # its job was still running: it must stop
    finally:
        unsubscribe()
        holder.close()
        victim.stop()
        victim.stop()  # forced: the 30 s job is abandoned
        thread.join(10)


def test_the_masters_reclaim_of_a_dead_child_removes_its_registry_row(db) -> None:
    name = "host:box pid:4242 0badcafe"
    _dead_worker(db, name, age=0.0)
    _dead_worker(db, "host:box pid:4343 0badcaff", age=0.0)
    delayed.enqueue_many([Remember.build(1)])
    [job_id] = _claim(db, name, 1)
    reclaimer = Reclaimer()
    try:
        reclaimer.submit(Reclaim(4242, name, delayed.get_config()), recheck=False)
    finally:
        reclaimer.dispose()
    assert db.row(job_id)["locked_by"] is None
    assert [r["name"] for r in _registry(db)] == ["host:box pid:4343 0badcaff"]


def test_workers_command_exit_statuses(tmp_path) -> None:
    missing = f"sqlite:///{tmp_path / 'no' / 'such.sqlite3'}"
    result = CliRunner().invoke(main, ["workers", "--database-url", missing])
    assert result.exit_code == 1 and "failed" in result.output, result.output
    bad = CliRunner().invoke(main, ["workers", "--database-url", "not a url"])
    assert bad.exit_code == 2, bad.output
