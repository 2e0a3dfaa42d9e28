"""Every signal handler only records and wakes: no lock, nothing of `threading`, no logging.

A handler runs in the main thread between two bytecodes of whatever that thread was doing.
If it takes a lock the main thread holds at that moment (a threading.Event's, inside
Event.wait() or clear(); the logging lock), it waits for itself forever. So each handler is
run here under a profiler that records every call it makes, and any call into threading.py
or logging, or any acquire of a lock, fails the test.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from delayed.cli.monitor import stop_on_signals
from delayed.config import build_config
from delayed.supervisor.arbiter import Supervisor
from delayed.supervisor.child_process import ChildSpec, Reporter, _Heartbeat, _reset_signals, _Stopper
from delayed.supervisor.settings import load_settings
from delayed.wakeup import Wakeup
from delayed.worker import Worker

from .conftest import SqliteJobs

LOCK_TYPES = (type(threading.Lock()), type(threading.RLock()))
FORBIDDEN_FILES = (threading.__file__, logging.__file__)


def calls_made_by(handler: Callable[..., Any], *args: Any) -> list[str]:
    """Run `handler(*args)` under a profiler; the calls that a handler must never make."""
    bad: list[str] = []

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code.co_filename in FORBIDDEN_FILES:
            bad.append(f"{frame.f_code.co_filename}:{frame.f_code.co_name}")
        elif event == "c_call" and isinstance(getattr(arg, "__self__", None), LOCK_TYPES):
            bad.append(f"{type(arg.__self__).__name__}.{arg.__name__}")
        elif event == "c_call" and getattr(arg, "__module__", None) == "_thread":
            bad.append(f"_thread.{arg.__name__}")

    sys.setprofile(profile)
    try:
        handler(*args)
    finally:
        sys.setprofile(None)
    return bad


def test_the_profiler_sees_an_event_set_and_a_log_call() -> None:
    """The check itself: what the old handlers did is caught."""
    assert calls_made_by(threading.Event().set)
    assert calls_made_by(logging.getLogger("delayed.test").warning, "x")
    assert calls_made_by(threading.Lock().acquire) == ["lock.acquire"]


@pytest.fixture
def worker(jobs: SqliteJobs) -> Worker:
    return Worker(config=build_config(None, environ={"DELAYED_DATABASE_URL": jobs.url}))


def test_delayed_works_handler_takes_no_lock_first_or_second_signal(worker: Worker) -> None:
    assert calls_made_by(worker._on_signal, signal.SIGTERM, None) == []
    assert calls_made_by(worker._on_signal, signal.SIGTERM, None) == []
    assert worker._stop and worker._force


@pytest.fixture
def child_handlers(worker: Worker) -> Iterator[tuple[_Stopper, _Heartbeat, dict[int, Any]]]:
    """The handlers a supervisor child installs, with the Worker as the stop target."""
    saved = {
        sig: signal.getsignal(sig)
        for sig in (
            signal.SIGTERM,
            signal.SIGUSR1,
            signal.SIGCHLD,
            signal.SIGPIPE,
            signal.SIGINT,
            signal.SIGQUIT,
            signal.SIGHUP,
            signal.SIGTTIN,
            signal.SIGTTOU,
        )
    }
    stopper = _Stopper()
    spec = ChildSpec("worker", "default", [], None, None, 1, worker.config, 0, report_fd=-1)
    heartbeat = _Heartbeat(spec, Reporter(-1), stopper)
    try:
        _reset_signals(stopper, heartbeat)
        installed = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGUSR1)}
        yield stopper, heartbeat, installed
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def test_a_supervisor_childs_term_and_usr1_handlers_take_no_lock(
    worker: Worker, child_handlers: tuple[_Stopper, _Heartbeat, dict[int, Any]]
) -> None:
    stopper, heartbeat, installed = child_handlers
    on_term, on_usr1 = installed[signal.SIGTERM], installed[signal.SIGUSR1]
    assert calls_made_by(on_term, signal.SIGTERM, None) == []  # before the worker exists: kept
    assert stopper.requested and not worker._stop
    stopper.target = worker.drain
    assert calls_made_by(on_term, signal.SIGTERM, None) == []
    assert calls_made_by(on_term, signal.SIGTERM, None) == []
    assert worker._stop and not worker._force, "a repeated TERM never forces the child's worker"
    assert calls_made_by(on_usr1, signal.SIGUSR1, None) == []
    assert heartbeat.reopen


def test_the_monitor_childs_and_delayed_monitors_handlers_take_no_lock(
    child_handlers: tuple[_Stopper, _Heartbeat, dict[int, Any]],
) -> None:
    stopper, _, installed = child_handlers
    stop = Wakeup()
    stopper.target = stop.set
    assert calls_made_by(installed[signal.SIGTERM], signal.SIGTERM, None) == []
    assert stop.is_set() and stop.wait(0)
    stop.close()
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        stop = stop_on_signals()
        assert calls_made_by(signal.getsignal(signal.SIGINT), signal.SIGINT, None) == []
        assert stop.is_set()
        stop.close()
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def test_the_masters_handler_takes_no_lock(tmp_path: Path, jobs: SqliteJobs) -> None:
    path = tmp_path / "d.toml"
    path.write_text(f'[delayed]\ndatabase_url = "{jobs.url}"\n')
    sup = Supervisor(load_settings(str(path), environ={}))
    try:
        assert calls_made_by(sup._on_signal, signal.SIGTERM, None) == []
        assert calls_made_by(sup._on_signal, signal.SIGCHLD, None) == []
        assert sup.signals == [signal.SIGTERM]
    finally:
        os.close(sup.wake_r)
        os.close(sup.wake_w)


def test_a_wakeup_set_while_another_thread_waits_on_it_wakes_it() -> None:
    stop = Wakeup()
    woke: list[bool] = []
    waiter = threading.Thread(target=lambda: woke.append(stop.wait(30)))
    waiter.start()
    stop.set()
    waiter.join(10)
    assert woke == [True] and not waiter.is_alive()
    stop.close()
