"""The bad-input matrix (issue 7): each bad input gets a clear message, and no secret leaks.

Config: every [delayed] key with a wrong type (taken from delayed.config.SECTIONS, so a new key
is covered without touching this file), unknown keys and sections, a missing file, broken TOML,
through build_config and through a real `delayed work -c bad.toml` (exit 2).
Database: unreachable at start (the worker logs, backs off, keeps trying, and stops cleanly on
SIGTERM), unreachable at enqueue, a password in the URL (never in logs, titles or errors).
Rows: an unknown job name, handlers that are not pydelayed's JSON. Arguments that are not JSON.
Queue names with quotes and SQL in them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

import delayed
from delayed.cli import main
from delayed.config import SECTIONS, build_config, get_config, set_config
from delayed.errors import ConfigError, SerializationError
from delayed.timeutil import utcnow
from tests.helpers import toml_value
from tests.jobs.sample_jobs import Noop

SECRET = "s3cret"
CLOSED_URLS = {
    "postgresql": f"postgresql://postgres:{SECRET}@127.0.0.1:1/nowhere",
    "mysql": f"mysql://root:{SECRET}@127.0.0.1:1/nowhere",
}


# ----------------------------------------------------------------------------- helpers
def write(tmp_path: Path, text: str, name: str = "bad.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def rejects(key: str, value: Any) -> bool:
    """Whether the [delayed] key's parser refuses `value` (as the file would hand it over)."""
    try:
        SECTIONS["delayed"].settings[key].parse(value)
    except (ValueError, TypeError):
        return True
    return False


@pytest.fixture
def restore_config() -> Iterator[None]:
    original = get_config()
    yield
    set_config(original)


DELAYED_KEYS = sorted(SECTIONS["delayed"].settings)
COMPOUND = [{"x": "y"}, [1, 2]]  # a table and an array of numbers
SCALARS = [True, 3, 1.5, "zzz"]


# ----------------------------------------------------------------------------- config
@pytest.mark.parametrize("key", DELAYED_KEYS)
def test_every_delayed_key_with_a_wrong_type_is_refused_naming_file_and_key(tmp_path: Path, key: str) -> None:
    wrong = [v for v in COMPOUND + SCALARS if rejects(key, v)]
    # Every key refuses at least one compound value and one scalar of the wrong type.
    assert any(v in wrong for v in COMPOUND), f"{key} accepts both a table and an array"
    assert any(v in wrong for v in SCALARS), f"{key} accepts every scalar {SCALARS}"
    for value in wrong:
        path = write(tmp_path, f"[delayed]\n{key} = {toml_value(value)}\n")
        with pytest.raises(ConfigError) as info:
            build_config(path, environ={})
        message = str(info.value)
        assert str(path) in message and f"[delayed] {key}:" in message, message
        assert "expected" in message or "must" in message, message  # says what would be right


def test_environment_values_of_the_wrong_type_name_the_variable() -> None:
    for setting in SECTIONS["delayed"].settings.values():
        for env_name in setting.env:
            if rejects(setting.name, "not-a-number, nor:a-bool"):
                with pytest.raises(ConfigError, match=f"environment variable {env_name}: "):
                    build_config(environ={env_name: "not-a-number, nor:a-bool"})


def test_arguments_of_the_wrong_type_are_refused(restore_config: None) -> None:
    with pytest.raises(ConfigError, match=r"arguments: \[delayed\] max_claims: expected an integer"):
        delayed.configure(max_claims="many")
    with pytest.raises(ConfigError, match=r"arguments: \[delayed\] unknown key 'no_such_setting'"):
        delayed.configure(no_such_setting=1)


@pytest.mark.parametrize("name", sorted(SECTIONS))
def test_unknown_key_in_each_section_lists_the_known_keys(tmp_path: Path, name: str) -> None:
    header = f"[[{name}]]" if SECTIONS[name].array else f"[{name}]"
    path = write(tmp_path, f"{header}\nno_such_key = 1\n")
    with pytest.raises(ConfigError) as info:
        build_config(path, environ={})
    message = str(info.value)
    assert str(path) in message and "unknown key 'no_such_key'" in message and "known keys:" in message


def test_unknown_section_missing_file_broken_toml_and_wrong_shapes(tmp_path: Path) -> None:
    cases = {
        write(tmp_path, "[delayd]\nmax_claims = 1\n", "section.toml"): r"unknown section \[delayd\]; known",
        tmp_path / "missing.toml": "config file not found",
        write(tmp_path, "[delayed\nmax_claims = 1\n", "broken.toml"): "not valid TOML",
        write(tmp_path, 'max_claims = "3" = 4\n', "broken2.toml"): "not valid TOML",
        write(tmp_path, "delayed = 5\n", "shape.toml"): r"\[delayed\] must be a table",
        write(tmp_path, "[delayed]\nmax_claimz = 3\n", "key.toml"): "unknown key 'max_claimz'",
    }
    for path, pattern in cases.items():
        with pytest.raises(ConfigError, match=pattern) as info:
            build_config(path, environ={})
        assert str(path) in str(info.value)


# ----------------------------------------------------------------------------- database
@pytest.mark.parametrize("backend", sorted(CLOSED_URLS))
def test_enqueue_to_an_unreachable_database_raises_a_clear_error(restore_config: None, backend: str) -> None:
    set_config(build_config(environ={}, overrides={"database_url": CLOSED_URLS[backend]}))
    with pytest.raises(delayed.EnqueueError) as info:
        Noop.perform_later(1)
    message = str(info.value)
    assert "127.0.0.1" in message and "Connection refused" in message
    assert "No job was stored" in message and "tests.noop" in message
    assert isinstance(info.value.__cause__, sa.exc.OperationalError)
    assert SECRET not in message and SECRET not in repr(info.value)


def test_bad_urls_with_passwords_are_redacted_in_errors() -> None:
    for url in (f"nosuch://u:{SECRET}@h/db", f"postgresql://u:{SECRET}@h:notaport/db"):
        with pytest.raises(ConfigError) as info:
            delayed.db.create_engine(url)
        assert "database_url" in str(info.value) and SECRET not in str(info.value)
    assert delayed.db.redact(CLOSED_URLS["postgresql"]) == "postgresql://postgres:***@127.0.0.1:1/nowhere"


# ----------------------------------------------------------------------------- rows
def _row(name: str, handler: str, queue: str = "default") -> dict[str, Any]:
    now = utcnow()
    return {
        "priority": 0,
        "attempts": 0,
        "handler": handler,
        "run_at": now,
        "queue": queue,
        "name": name,
        "created_at": now,
        "updated_at": now,
    }


def _insert(db, name: str, handler: str) -> int:
    with db.engine.begin() as conn:
        return int(conn.execute(db.table.insert().values(_row(name, handler))).inserted_primary_key[0])


def test_unknown_job_name_fails_its_row_saying_how_to_register_it(db) -> None:
    job_id = _insert(db, "billing.Charge", json.dumps({"job": "billing.Charge", "args": [1], "kwargs": {}}))
    assert delayed.Worker().work_off(5) == (0, 1)
    row = db.row(job_id)
    assert row["failed_at"] is not None and row["attempts"] == 0 and row["locked_by"] is None
    first = row["last_error"].splitlines()[0]
    assert "no job class is registered as 'billing.Charge'" in first
    assert "require" in first and "--require" in first


@pytest.mark.parametrize(
    "handler,message",
    [
        ("--- !ruby/object:Delayed::PerformableMethod\nobject: 1\n", "handler is not JSON"),
        ("", "handler is not JSON"),
        ('{"job": 5}', 'handler has no "job" name'),
        ('["tests.noop"]', 'handler has no "job" name'),
        ('{"job": "tests.noop", "args": {"a": 1}}', "args must be a list and kwargs an object"),
    ],
)
def test_a_handler_that_is_not_pydelayed_json_fails_its_row(db, handler: str, message: str) -> None:
    job_id = _insert(db, "tests.noop", handler)
    assert delayed.Worker().work_off(5) == (0, 1)
    row = db.row(job_id)
    assert row["failed_at"] is not None and row["attempts"] == 0
    assert message in row["last_error"].splitlines()[0]
    shown = CliRunner().invoke(main, ["jobs", "show", str(job_id), "--database-url", db.url])
    assert shown.exit_code == 0, shown.output
    assert message in shown.stdout  # the operator can read a broken row, too


# ----------------------------------------------------------------------------- arguments
class Point:
    pass


@pytest.mark.parametrize(
    "args,kwargs,names,problem",
    [
        ((datetime(2024, 1, 1),), {}, "positional argument 0", "datetime.datetime is not JSON"),
        ((), {"when": date(2024, 1, 1)}, "keyword argument 'when'", "datetime.date is not JSON"),
        ((1, Point()), {}, "positional argument 1", "Point is not JSON"),
        (({1, 2},), {}, "positional argument 0", "builtins.set is not JSON"),
        ((math.nan,), {}, "positional argument 0", "nan is not a finite number"),
        ((), {"ratio": math.inf}, "keyword argument 'ratio'", "inf is not a finite number"),
        (({1: "one"},), {}, "positional argument 0", "has the non-string key 1"),
        (([1, {"a": {2}}],), {}, "positional argument 0", "[1]: ['a']: builtins.set is not JSON"),
        ((Decimal("1.5"),), {}, "positional argument 0", "decimal.Decimal is not JSON"),
        ((b"bytes",), {}, "positional argument 0", "builtins.bytes is not JSON"),
    ],
)
def test_arguments_that_are_not_json_are_refused_naming_the_argument(
    db, args: tuple[Any, ...], kwargs: dict[str, Any], names: str, problem: str
) -> None:
    attempts = [
        lambda: Noop.perform_later(*args, **kwargs),
        lambda: Noop.set(queue="q").perform_later(*args, **kwargs),
        lambda: delayed.enqueue_many([Noop.build(*args, **kwargs)]),
        lambda: Noop.perform_now(*args, **kwargs),
    ]
    for attempt in attempts:
        with pytest.raises(SerializationError) as info:
            attempt()
        message = str(info.value)
        assert message.startswith(f"tests.noop: {names} cannot be stored as JSON"), message
        assert problem in message and "never pickles" in message
    assert db.count() == 0


# ----------------------------------------------------------------------------- queue names
EVIL_QUEUES = [
    "q'; DROP TABLE delayed_jobs; --",
    "\"; DELETE FROM delayed_jobs WHERE ''='",
    "back\\slash' OR '1'='1",
    "100%_like",
    "snow ☃ o'clock",
]


def test_queue_names_with_quotes_and_sql_are_just_names(db) -> None:
    ids = {queue: Noop.set(queue=queue).perform_later(queue) for queue in EVIL_QUEUES}
    control = Noop.set(queue="default").perform_later("control")
    for queue in EVIL_QUEUES:
        assert [r.id for r in delayed.admin.list_jobs(queue=queue)] == [ids[queue]]
        listed = CliRunner().invoke(
            main, ["jobs", "list", "--queue", queue, "--json", "--database-url", db.url]
        )
        assert listed.exit_code == 0, listed.output
        assert [(j["id"], j["queue"]) for j in json.loads(listed.stdout)] == [(ids[queue], queue)]
        assert delayed.Worker(queues=[queue]).work_off(5) == (1, 0)
        assert db.row(ids[queue]) is None
    assert [r["id"] for r in db.rows()] == [control]  # the table and the other job survive
