"""[supervisor] and [[pool]]: defaults, inheritance, the example file, exit-status wording."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from delayed.errors import ConfigError
from delayed.supervisor import describe_status, load_settings

ROOT = Path(__file__).resolve().parents[2]


def test_without_pools_one_default_pool_comes_from_supervisor_and_delayed(tmp_path: Path) -> None:
    path = tmp_path / "d.toml"
    path.write_text('[delayed]\nmax_claims = 7\nqueues = ["mail"]\nmax_priority = "user_visible"\n')
    settings = load_settings(str(path), environ={})
    [pool] = settings.pools
    assert (pool.name, pool.workers, pool.max_claims, pool.queues) == ("default", 2, 7, ["mail"])
    assert pool.max_priority == "user_visible" and pool.min_priority is None
    assert settings.graceful_timeout == 30.0 and settings.max_memory_mb is None
    assert settings.log_level == "INFO" and settings.on_worker_boot is None


def test_pools_inherit_what_they_leave_out(tmp_path: Path) -> None:
    path = tmp_path / "d.toml"
    path.write_text(
        '[delayed]\nmax_claims = 3\n[supervisor]\nworkers = 4\nmax_claims = 6\ngraceful_timeout = "1m"\n'
        '[[pool]]\nname = "fast"\nqueues = ["a", "b"]\nmax_priority = 9\nworkers = 1\nmax_claims = 2\n'
        "[[pool]]\nmin_priority = 10\n"
    )
    settings = load_settings(str(path), environ={})
    fast, other = settings.pools
    assert (fast.name, fast.queues, fast.max_priority, fast.workers, fast.max_claims) == (
        "fast",
        ["a", "b"],
        9,
        1,
        2,
    )
    assert (other.name, other.queues, other.min_priority, other.workers, other.max_claims) == (
        "pool-2",
        [],
        10,
        4,
        6,
    )
    assert settings.graceful_timeout == 60.0


def test_the_example_config_is_valid_and_documents_every_key() -> None:
    from delayed.config import SECTIONS

    example = ROOT / "conf" / "delayed.toml"
    settings = load_settings(str(example), environ={})
    assert [p.name for p in settings.pools] == ["interactive", "default"]
    text = example.read_text()
    for section in ("delayed", "supervisor", "pool"):
        for key in SECTIONS[section].settings:
            documented = f"{key} =" in text or f"[{section}.{key}]" in text
            assert documented, f"[{section}] {key} is not in conf/delayed.toml"


def test_monitor_true_adds_one_monitor_child(tmp_path: Path) -> None:
    path = tmp_path / "d.toml"
    path.write_text("[supervisor]\nmonitor = true\nworkers = 1\n")
    pools = load_settings(str(path), environ={}).pools
    assert [(p.name, p.kind, p.workers) for p in pools] == [
        ("default", "worker", 1),
        ("monitor", "monitor", 1),
    ]


def test_errors_name_the_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "d.toml"
    path.write_text("[supervisor]\nmax_memory_mb = 0\n")
    with pytest.raises(ConfigError, match=r"d\.toml: \[supervisor\] max_memory_mb: must be at least 1"):
        load_settings(str(path), environ={})
    path.write_text('[supervisor]\nlog_level = "LOUD"\n')
    with pytest.raises(ConfigError, match=r"\[supervisor\] log_level: expected a log level"):
        load_settings(str(path), environ={})


def test_describe_status_names_signals_and_exit_codes() -> None:
    pid = os.fork()
    if pid == 0:
        os.kill(os.getpid(), signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    assert describe_status(status) == "was killed by signal SIGKILL"
    pid = os.fork()
    if pid == 0:
        os._exit(3)
    _, status = os.waitpid(pid, 0)
    assert describe_status(status) == "exited with status 3"
