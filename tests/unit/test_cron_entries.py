"""Cron entries as config: `[[cron]]` tables and `delayed.cron(...)`, each checked in full.

Whatever is wrong with an entry is a ConfigError that names the entry (its key, and the file
and table number or the code line), raised when the entries load, before a scheduler runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import delayed
from delayed.config import build_config
from delayed.errors import ConfigError
from delayed.recurring import Cron, Every, load_entries
from delayed.recurring.entries import declared, forget
from tests.helpers import render_toml


class Report(delayed.Job, name="tests.unit.cron.report"):
    queue = "reports"

    def perform(self, *args: Any, **kwargs: Any) -> None:
        return None


@pytest.fixture(autouse=True)
def no_code_entries() -> Iterator[None]:
    """Entries declared in code are process-wide: each test starts and ends without any."""
    for key in declared():
        forget(key)
    yield
    for key in declared():
        forget(key)


def config_with(tmp_path: Path, *entries: dict[str, Any], **sections: Any) -> Any:
    path = tmp_path / "delayed.toml"
    path.write_text(render_toml({"cron": list(entries), **sections}))
    return build_config(path, environ={})


def test_tables_become_entries(tmp_path: Path) -> None:
    config = config_with(
        tmp_path,
        {
            "key": "nightly",
            "schedule": "0 3 * * *",
            "job": "tests.unit.cron.report",
            "args": ["full"],
            "kwargs": {"format": "pdf"},
            "queue": "night",
            "priority": "reporting",
            "timezone": "Europe/Zurich",
        },
        {"key": "beat", "every": "30s", "job": "tests.unit.cron.report"},
    )
    nightly, beat = load_entries(config)
    assert nightly.key == "nightly" and nightly.schedule == Cron("0 3 * * *", "Europe/Zurich")
    assert (nightly.args, nightly.kwargs, nightly.queue, nightly.priority) == (
        ("full",),
        {"format": "pdf"},
        "night",
        "reporting",
    )
    assert beat.schedule == Every(timedelta(seconds=30)) and beat.timezone is None


def test_the_job_of_a_tick_runs_at_the_tick(tmp_path: Path) -> None:
    config = config_with(
        tmp_path, {"key": "nightly", "schedule": "0 3 * * *", "job": "tests.unit.cron.report"}
    )
    (entry,) = load_entries(config)
    tick = datetime(2030, 1, 1, 3)
    request = entry.request(tick)
    assert request.run_at == tick and request.queue == "reports"  # the class's queue
    assert request.job_class is Report


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"key": "bad-expr", "schedule": "0 3 * *", "job": "tests.unit.cron.report"}, "has 4 field"),
        ({"key": "bad-range", "schedule": "61 * * * *", "job": "tests.unit.cron.report"}, "does not parse"),
        (
            {
                "key": "bad-zone",
                "schedule": "0 3 * * *",
                "timezone": "Europe/Atlantis",
                "job": "tests.unit.cron.report",
            },
            "unknown time zone 'Europe/Atlantis'",
        ),
        (
            {"key": "no-job", "schedule": "0 3 * * *", "job": "reports.Missing"},
            "'reports.Missing' is not a registered",
        ),
        (
            {"key": "both", "schedule": "0 3 * * *", "every": "1h", "job": "tests.unit.cron.report"},
            "not both",
        ),
        ({"key": "neither", "job": "tests.unit.cron.report"}, "either schedule"),
        ({"key": "tiny", "every": "0.5s", "job": "tests.unit.cron.report"}, "at least 1 s"),
        (
            {
                "key": "zone-every",
                "every": "1h",
                "timezone": "Europe/Zurich",
                "job": "tests.unit.cron.report",
            },
            "schedule only",
        ),
        (
            {"key": "bad-priority", "every": "1h", "priority": "urgentest", "job": "tests.unit.cron.report"},
            "priority",
        ),
        ({"schedule": "0 3 * * *", "job": "tests.unit.cron.report"}, "needs a key"),
        ({"key": "k" * 256, "every": "1h", "job": "tests.unit.cron.report"}, "longer than 255"),
    ],
)
def test_a_bad_entry_is_a_config_error_naming_it(tmp_path: Path, entry: dict[str, Any], message: str) -> None:
    config = config_with(tmp_path, {"key": "fine", "every": "1h", "job": "tests.unit.cron.report"}, entry)
    with pytest.raises(ConfigError) as caught:
        load_entries(config)
    text = str(caught.value)
    assert message in text
    assert "delayed.toml [[cron]] #2" in text
    if "key" in entry and len(entry["key"]) < 100:
        assert repr(entry["key"]) in text


def test_a_bad_value_kind_names_the_table(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[\[cron\]\] #1.*args"):
        config_with(tmp_path, {"key": "x", "every": "1h", "job": "tests.unit.cron.report", "args": "full"})


def test_a_key_used_twice_is_refused(tmp_path: Path) -> None:
    same = {"key": "dup", "every": "1h", "job": "tests.unit.cron.report"}
    with pytest.raises(ConfigError, match=r"'dup' is also used by .*#1"):
        load_entries(config_with(tmp_path, same, same))


def test_entries_in_code(tmp_path: Path) -> None:
    delayed.cron(
        "code-nightly", "0 3 * * *", Report, args=["full"], queue="reports", timezone="Europe/Zurich"
    )
    delayed.cron("code-beat", every="30s", job="tests.unit.cron.report")
    config = config_with(tmp_path, {"key": "file", "every": "1h", "job": "tests.unit.cron.report"})
    keys = [entry.key for entry in load_entries(config)]
    assert keys == ["file", "code-nightly", "code-beat"]
    with pytest.raises(ConfigError, match="'file' is also used by"):
        delayed.cron("file", every="1h", job=Report)
        load_entries(config)


def test_code_checks_what_it_can_at_once() -> None:
    with pytest.raises(
        ConfigError, match=r"test_cron_entries.py:\d+ \(cron entry 'broken'\): .*does not parse"
    ):
        delayed.cron("broken", "0 99 * * *", Report)
    with pytest.raises(ConfigError, match="cannot be stored as JSON"):
        delayed.cron("objects", every="1h", job=Report, args=[object()])
    with pytest.raises(TypeError, match="job= is required"):
        delayed.cron("nojob", "0 3 * * *")
    delayed.cron("later", every="1h", job="not.yet.Registered")  # a name: checked at load
    with pytest.raises(ConfigError, match=r"'not\.yet\.Registered' is not a registered job name"):
        load_entries(build_config(environ={}))


def test_no_entries() -> None:
    assert load_entries(build_config(environ={})) == []
