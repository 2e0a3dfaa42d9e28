"""The autovacuum warning a PostgreSQL worker logs at start-up (delayed.backends.postgres)."""

from __future__ import annotations

from delayed.backends.postgres import autovacuum_warning


def test_no_warning_when_the_server_and_the_table_vacuum() -> None:
    assert autovacuum_warning("on", None, "delayed_jobs") is None
    assert autovacuum_warning("on", ["fillfactor=33", "autovacuum_vacuum_scale_factor=0.02"], "jobs") is None
    assert autovacuum_warning("on", ["autovacuum_enabled=true"], "jobs") is None


def test_the_server_switch_is_named_first() -> None:
    warning = autovacuum_warning("off", ["autovacuum_enabled=false"], "delayed_jobs")
    assert warning is not None
    assert "off on this server" in warning and "set autovacuum = on" in warning
    assert "VACUUM delayed_jobs" in warning


def test_the_table_switch_names_the_table_and_the_fix() -> None:
    for option in ("autovacuum_enabled=false", "autovacuum_enabled = FALSE"):
        warning = autovacuum_warning("on", ["fillfactor=33", option], "my_jobs")
        assert warning is not None
        assert "for table my_jobs" in warning
        assert "ALTER TABLE my_jobs RESET (autovacuum_enabled)" in warning
