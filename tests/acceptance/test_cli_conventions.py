"""What every command shares: one line and exit 2 for bad input, exit 1 for a failure at run time,
and `delayed supervise --check [--connect]` saying what a file means."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import run_delayed, subprocess_env

CLOSED = "postgresql://postgres:s3cret@127.0.0.1:1/nowhere"


def test_a_require_module_that_raises_is_one_line_and_exit_2(tmp_path: Path) -> None:
    env = subprocess_env(f"sqlite:///{tmp_path / 'x.sqlite3'}")
    work = run_delayed("work", "--require", "raises_on_import", "--exit-on-complete", env=env)
    config = tmp_path / "d.toml"
    config.write_text('[delayed]\nrequire = ["raises_on_import"]\n')
    supervise = run_delayed("supervise", "--check", "-c", str(config), env=env)
    for result in (work, supervise):
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        lines = [line for line in result.stderr.splitlines() if "raises_on_import" in line]
        assert len(lines) == 1, result.stderr
        assert "ValueError: the settings module is missing API_KEY" in lines[0]
        assert "raises_on_import.py:3" in lines[0]


def test_check_says_what_the_file_means(tmp_path: Path) -> None:
    config = tmp_path / "d.toml"
    config.write_text(
        f'[delayed]\ndatabase_url = "{CLOSED}"\nmax_claims = 4\n'
        '[[pool]]\nname = "mail"\nqueues = ["mail"]\nworkers = 3\n'
    )
    result = run_delayed("supervise", "--check", "-c", str(config), env=subprocess_env())
    assert result.returncode == 0, result.stderr
    assert f"{config}: OK" in result.stdout
    assert "pool mail: 3 child(ren) x 4 thread(s); queues mail" in result.stdout
    assert "postgresql://postgres:***@127.0.0.1:1/nowhere" in result.stdout
    assert "s3cret" not in result.stdout + result.stderr


def test_check_connect_reaches_the_database_or_exits_1(db, tmp_path: Path) -> None:
    good = run_delayed("supervise", "--check", "--connect", env=subprocess_env(db.url))
    assert good.returncode == 0, good.stderr
    assert "database reachable; table delayed_jobs present" in good.stdout
    closed = run_delayed("supervise", "--check", "--connect", env=subprocess_env(CLOSED))
    assert closed.returncode == 1
    assert "Connection refused" in closed.stderr and "s3cret" not in closed.stderr
    empty = run_delayed(
        "supervise", "--check", "--connect", env=subprocess_env(f"sqlite:///{tmp_path / 'e.db'}")
    )
    assert empty.returncode == 1
    assert "table delayed_jobs does not exist: run `delayed migrate`" in empty.stderr


def test_a_runtime_database_failure_is_exit_1_for_every_command() -> None:
    env = subprocess_env(CLOSED)
    for args in (("migrate",), ("jobs", "list"), ("jobs", "stats"), ("monitor", "--once")):
        result = run_delayed(*args, env=env)
        assert result.returncode == 1, (args, result.stderr)
        assert "Connection refused" in result.stderr and "s3cret" not in result.stderr
