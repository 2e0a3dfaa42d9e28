"""The operator-API tests' job: fails until an operator "fixes the cause"."""

from __future__ import annotations

import delayed

BROKEN = {"mail": True}


class Flaky(delayed.Job, name="tests.admin.flaky"):
    """Fails while BROKEN["mail"] is set: an operator "fixes the cause" by clearing it."""

    max_attempts = 1

    def perform(self, to: str) -> None:
        if BROKEN["mail"]:
            raise ConnectionError(f"SMTP refused {to}\nsecond line of the error")


def fail_for_real(queue: str = "mail", count: int = 1) -> list[int]:
    """Enqueue Flaky jobs and run them: each fails once and, with max_attempts 1, for good."""
    ids = delayed.enqueue_many([Flaky.set(queue=queue).build(f"user{i}@example.com") for i in range(count)])
    succeeded, failed = delayed.Worker(queues=[queue], sleep_delay=0.1).work_off(count)
    assert (succeeded, failed) == (0, count)
    return ids
