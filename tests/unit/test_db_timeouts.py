"""The workers' engine: connect and network timeouts per driver, the URL's own values winning."""

from __future__ import annotations

from delayed.db import engine_for, reset_engine, timeout_args, worker_engine_for


def test_postgresql_gets_a_connect_timeout_keepalives_and_a_tcp_user_timeout() -> None:
    args = timeout_args("postgresql://u@db.example/app", connect_timeout=10, network_timeout=30)
    assert args == {
        "connect_timeout": 10,
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 5,
        "keepalives_count": 3,
        "tcp_user_timeout": 30_000,
    }
    assert timeout_args("postgresql://u@h/app", 0.5, 30)["connect_timeout"] == 2  # libpq's minimum


def test_mysql_gets_connect_read_and_write_timeouts() -> None:
    args = timeout_args("mysql://root@db.example/app", connect_timeout=2.5, network_timeout=30)
    assert args == {"connect_timeout": 2.5, "read_timeout": 30, "write_timeout": 30}


def test_a_timeout_in_the_url_wins_and_sqlite_gets_none() -> None:
    args = timeout_args("postgresql://u@h/app?connect_timeout=60", 10, 30)
    assert "connect_timeout" not in args and args["tcp_user_timeout"] == 30_000
    assert timeout_args("sqlite:///jobs.sqlite3", 10, 30) == {}


def test_the_worker_engine_is_not_the_one_jobs_share() -> None:
    url = "postgresql://u@h/app"
    try:
        worker = worker_engine_for(url, 10, 30)
        assert worker is worker_engine_for(url, 10, 30)
        assert worker is not engine_for(url), "jobs' statements get no network timeout"
    finally:
        reset_engine()
