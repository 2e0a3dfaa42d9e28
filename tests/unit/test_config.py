"""Settings: defaults as in the Ruby gem, file, environment, overrides, and errors naming the key."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

import delayed
from delayed.config import build_config
from delayed.errors import ConfigError


def test_defaults_match_the_ruby_gem() -> None:
    c = build_config(environ={})
    assert c.max_claims == 5
    assert c.read_ahead == 5
    assert c.sleep_delay == 5.0
    assert c.max_attempts == 25
    assert c.max_run_time == 1200.0
    assert c.lock_timeout == 1230.0
    assert c.queues == []
    assert c.default_queue_name == "default"
    assert c.default_priority == 10
    assert c.min_priority is None and c.max_priority is None
    assert c.destroy_failed_jobs is False
    assert c.priority_names == {"interactive": 0, "user_visible": 10, "eventual": 20, "reporting": 30}
    assert c.database_url == "sqlite:///delayed.sqlite3"
    assert c.require == []


def test_file_then_env_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "delayed.toml"
    path.write_text(
        '[delayed]\nmax_claims = 8\nqueues = ["a", "b"]\nmax_run_time = "5m"\nsleep_delay = 0.5\n'
        'require = ["myapp.jobs"]\n'
    )
    c = build_config(path, environ={})
    assert (c.max_claims, c.queues, c.max_run_time, c.sleep_delay) == (8, ["a", "b"], 300.0, 0.5)
    assert c.require == ["myapp.jobs"]
    env = {"MAX_CLAIMS": "3", "QUEUES": "x, y", "DELAYED_DATABASE_URL": "sqlite:///other.db"}
    c = build_config(path, environ=env)
    assert (c.max_claims, c.queues, c.database_url) == (3, ["x", "y"], "sqlite:///other.db")
    assert build_config(path, environ={"QUEUE": "solo"}).queues == ["solo"]
    c = build_config(path, environ=env, overrides={"max_claims": 12, "sleep_delay": timedelta(seconds=2)})
    assert (c.max_claims, c.sleep_delay) == (12, 2.0)


@pytest.mark.parametrize(
    "body,key",
    [
        ("max_claims = 0", "max_claims"),
        ('max_claims = "many"', "max_claims"),
        ("max_run_time = 0", "max_run_time"),
        ('sleep_delay = "soon"', "sleep_delay"),
        ("queues = 5", "queues"),
        ('destroy_failed_jobs = "maybe"', "destroy_failed_jobs"),
        ("max_claimz = 3", "max_claimz"),
        ("priority_names = { high = 5 }", "priority_names"),
    ],
)
def test_bad_values_name_file_and_key(tmp_path: Path, body: str, key: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(f"[delayed]\n{body}\n")
    with pytest.raises(ConfigError) as info:
        build_config(path, environ={})
    assert str(path) in str(info.value)
    assert key in str(info.value)


def test_bad_env_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="MAX_CLAIMS"):
        build_config(environ={"MAX_CLAIMS": "lots"})


def test_missing_file_unknown_section_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        build_config(tmp_path / "nope.toml", environ={})
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("[delayd]\nmax_claims = 1\n")
    with pytest.raises(ConfigError, match=r"unknown section \[delayd\]"):
        build_config(unknown, environ={})
    broken = tmp_path / "broken.toml"
    broken.write_text("[delayed\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        build_config(broken, environ={})


def test_configure_changes_the_process_config() -> None:
    original = delayed.get_config()
    try:
        delayed.configure(max_claims=9, queues=["q"])
        assert delayed.get_config().max_claims == 9
        assert delayed.get_config().queues == ["q"]
        with pytest.raises(ConfigError, match="max_attempts"):
            delayed.configure(max_attempts=-1)
    finally:
        delayed.config.set_config(original)


def test_worker_resolves_priority_names() -> None:
    worker = delayed.Worker(min_priority="user_visible", max_priority="eventual")
    assert (worker.filter.min_priority, worker.filter.max_priority) == (10, 20)
    with pytest.raises(delayed.UnknownPriorityError):
        delayed.Worker(min_priority="urgent")


def test_every_key_reads_a_generic_environment_name(tmp_path: Path) -> None:
    c = build_config(environ={"DELAYED_DEFAULT_QUEUE_NAME": "env-default", "DELAYED_LISTEN_NOTIFY": "no"})
    assert c.default_queue_name == "env-default"
    assert c.listen_notify is False


def test_other_sections_read_delayed_section_key_env(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text("[tracing]\nspan_naming = 'job_class'\n")
    c = build_config(path, environ={"DELAYED_TRACING_ENABLED": "true"})
    assert c.tracing.enabled is True
    assert c.tracing.span_naming == "job_class"
    with pytest.raises(ConfigError, match="DELAYED_TRACING_PROPAGATION_STYLE"):
        build_config(environ={"DELAYED_TRACING_PROPAGATION_STYLE": "sideways"})
