"""What a forked child tells its master about itself, tested in-process with a real pipe."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from delayed import events
from delayed.supervisor import protocol
from delayed.supervisor.child_process import DatabaseWatch, Reporter


class Pipe:
    """A Reporter writing to a pipe, and the reports read back from it."""

    def __init__(self) -> None:
        self.read_fd, write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        self.reporter = Reporter(write_fd)
        self.decoder = protocol.Decoder()

    def reports(self) -> list[protocol.Decoded]:
        try:
            return self.decoder.feed(os.read(self.read_fd, 65536))
        except BlockingIOError:
            return []

    def close(self) -> None:
        os.close(self.read_fd)
        os.close(self.reporter.fd)


@pytest.fixture
def pipe() -> Iterator[Pipe]:
    made = Pipe()
    yield made
    made.close()


def reserve(worker: str, error: Exception | None = None) -> events.Event:
    """A `delayed.worker.reserve_jobs` event as Worker._reserve publishes it."""
    payload: dict[str, object] = {"worker": worker}
    if error is None:
        payload["count"] = 0
    else:
        payload["error"] = error
    return events.Event("delayed.worker.reserve_jobs", payload)


REFUSED = sa.exc.OperationalError("SELECT 1", {}, Exception("connection refused\nIs the server running?"))


def test_the_child_says_once_when_its_worker_cannot_reach_the_database_and_once_when_it_can(
    pipe: Pipe,
) -> None:
    """Issue 11 item 13: how the master learns that children do not work."""
    watch = DatabaseWatch(pipe.reporter, "host:h pid:1 abcd0123")
    watch.on_reserve(reserve("host:h pid:1 abcd0123"))
    assert pipe.reports() == [protocol.DatabaseUp()], "the first pickup says the child works"
    for _ in range(DatabaseWatch.DOWN_AFTER - 1):
        watch.on_reserve(reserve("host:h pid:1 abcd0123", REFUSED))
    assert pipe.reports() == [], "a blip is not an outage"
    for _ in range(5):
        watch.on_reserve(reserve("host:h pid:1 abcd0123", REFUSED))
    assert pipe.reports() == [protocol.DatabaseDown("Exception: connection refused")]
    watch.on_reserve(reserve("another worker in this process", None))
    assert pipe.reports() == []
    watch.on_reserve(reserve("host:h pid:1 abcd0123"))
    watch.on_reserve(reserve("host:h pid:1 abcd0123"))
    assert pipe.reports() == [protocol.DatabaseUp()]


def test_a_child_that_never_reached_the_database_says_so(pipe: Pipe) -> None:
    watch = DatabaseWatch(pipe.reporter, "w")
    for _ in range(DatabaseWatch.DOWN_AFTER):
        watch.on_reserve(reserve("w", REFUSED))
    assert pipe.reports() == [protocol.DatabaseDown("Exception: connection refused")]
