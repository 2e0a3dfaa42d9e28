"""Concurrency limits with real supervisors, children and threads, on every database (issue 13).

Jobs append their start and end to a file (tests/jobs/unique_jobs.py); the test reads the
intervals back and checks how many overlapped. No speed is asserted, only order.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance.test_supervisor import Sup
from tests.helpers import wait_for
from tests.jobs.unique_jobs import Holder, Keyless, Limited

pytestmark = pytest.mark.slow


def _lines(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def supervisor(db, tmp_path: Path) -> Iterator[Any]:
    made: list[Sup] = []

    def start(workers: int, threads: int) -> Sup:
        sup = Sup(
            tmp_path,
            db.url,
            {"workers": workers, "max_claims": threads, "heartbeat_timeout": 30},
            delayed={"require": ["unique_jobs"], "sleep_delay": 0.1},
        )
        made.append(sup)
        return sup.start()

    yield start
    for sup in made:
        sup.cleanup()


def test_limit_2_holds_across_children_and_keyless_jobs_do_not_wait(db, supervisor, tmp_path: Path) -> None:
    path = tmp_path / "runs.log"
    for n in range(100):
        Limited.perform_later(1, n, str(path), 0.02)
    for n in range(100):
        Keyless.perform_later(n, str(path))
    sup = supervisor(workers=3, threads=3)
    wait_for(lambda: sum(1 for f in _lines(path) if f[0] in ("end", "keyless")) == 200, timeout=120)
    sup.cleanup()
    events = sorted((float(f[2]), 1 if f[0] == "start" else -1) for f in _lines(path) if f[0] != "keyless")
    running = peak = 0
    for _, step in sorted(events, key=lambda e: (e[0], e[1])):  # an end before a start at a tie
        running += step
        peak = max(peak, running)
    assert peak == 2, f"at most 2 at once, and the limit is used: peak {peak}"
    keyed_ends = sorted(float(f[2]) for f in _lines(path) if f[0] == "end")
    keyless = [float(f[2]) for f in _lines(path) if f[0] == "keyless"]
    assert max(keyless) < keyed_ends[74], "the keyless jobs finished while the keyed ones still queued"
    assert db.count() == 0


def test_a_sigkilled_child_frees_its_slot(db, supervisor, tmp_path: Path) -> None:
    path = tmp_path / "runs.log"
    Holder.perform_later("a", 1, str(path), 120)
    Holder.perform_later("a", 2, str(path), 0.01)
    supervisor(workers=2, threads=2)
    wait_for(lambda: any(f[:2] == ["start", "1"] for f in _lines(path)), timeout=60)
    [victim] = [int(f[3]) for f in _lines(path) if f[:2] == ["start", "1"]]
    assert not any(f[:2] == ["start", "2"] for f in _lines(path)), "job 2 waits for the slot"
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: any(f[:2] == ["start", "2"] for f in _lines(path)), timeout=60)
