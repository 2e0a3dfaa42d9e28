"""Running the real `delayed` command in subprocesses, for the tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psutil
import sqlalchemy as sa

from delayed.backends import Backend
from delayed.record import Outcome

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
JOBS = TESTS / "jobs"  # the job modules subprocesses import (`--require sample_jobs`)


def subprocess_env(database_url: str | None = None, **extra: str) -> dict[str, str]:
    """The environment for a worker subprocess: tests/ importable, a given database."""
    env = dict(os.environ)
    paths = [str(JOBS), str(TESTS), str(ROOT / "src"), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    for key in [k for k in env if k.startswith("DELAYED_") or k in {"QUEUE", "QUEUES", "MAX_CLAIMS"}]:
        del env[key]
    if database_url is not None:
        env["DELAYED_DATABASE_URL"] = database_url
    env.update(extra)
    return env


def delayed_cmd(*args: str) -> list[str]:
    """`delayed ...` run with this interpreter (works without the console script on PATH)."""
    return [sys.executable, "-m", "delayed.cli", *args]


def run_delayed(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        delayed_cmd(*args), env=env, capture_output=True, text=True, timeout=timeout, cwd=str(TESTS)
    )


def start_delayed(*args: str, env: dict[str, str], log: Path | None = None) -> subprocess.Popen[str]:
    out = open(log, "w") if log is not None else subprocess.DEVNULL  # noqa: SIM115 - closed by the OS
    return subprocess.Popen(
        delayed_cmd(*args), env=env, stdout=out, stderr=subprocess.STDOUT, text=True, cwd=str(TESTS)
    )


def kill_session(sid: int) -> None:
    """SIGKILL every process of session `sid`: one started with start_new_session=True and all
    it made. A supervisor's children lead their own process groups (so killpg of the master's
    group misses them and what their jobs started), but they stay in its session."""
    if sid == os.getsid(0):
        raise ValueError("refusing to kill the test runner's own session")
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getsid(proc.pid) == sid:
                os.kill(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError, psutil.NoSuchProcess):
            continue


def wait_for(condition: Callable[[], object], timeout: float = 60, interval: float = 0.05) -> object:
    """Poll until `condition()` is truthy; fail with the last value after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    value = condition()
    while not value:
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s (last value {value!r})")
        time.sleep(interval)
        value = condition()
    return value


def toml_value(value: Any) -> str:
    """Just enough TOML for the values the tests write (tables inline)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {value!r} as TOML")


def render_toml(sections: dict[str, Any]) -> str:
    """`{section: {key: value}}` as TOML; a list of dicts becomes an array of tables."""
    out: list[str] = []
    for name, body in sections.items():
        tables = body if isinstance(body, list) else [body]
        for table in tables:
            out.append(f"[[{name}]]" if isinstance(body, list) else f"[{name}]")
            out.extend(f"{key} = {toml_value(value)}" for key, value in table.items())
            out.append("")
    return "\n".join(out)


def write_toml(path: Path, sections: dict[str, Any]) -> Path:
    """Write `sections` as TOML to `path` and return the path."""
    path.write_text(render_toml(sections))
    return path


class GatedBackend:
    """A database's real backend whose outcome writes wait until `gate` is set.

    For tests that need the completer's writes held back (back-pressure, exit-on-complete,
    a second signal while outcomes are queued): the writes are the real ones, only later.
    """

    def __init__(self, real: Backend) -> None:
        self.backend = type(real)(real.engine, real.table)
        self.gate = threading.Event()
        self.calls = 0
        write = self.backend.complete

        def complete(conn: sa.Connection, outcomes: Sequence[Outcome]) -> None:
            self.calls += 1
            self.gate.wait(60)
            write(conn, outcomes)

        self.backend.complete = complete  # type: ignore[method-assign]
