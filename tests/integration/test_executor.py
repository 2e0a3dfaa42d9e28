"""The executor on every database: a row is deleted only when its perform ran to completion."""

from __future__ import annotations

import gc
import warnings

import delayed
from delayed.worker import Worker
from tests.jobs import sample_jobs


class SneakyCoroutine(delayed.Job, name="tests.sneaky_coroutine"):
    """A plain def that returns a coroutine: past the definition check, caught at run time."""

    def perform(self, token: str):  # type: ignore[override]
        return self._run(token)

    async def _run(self, token: str) -> None:
        sample_jobs.note("sneaky", token)


class AssignedLater(delayed.Job, name="tests.assigned_later"):
    def perform(self, token: str) -> None:
        sample_jobs.note("assigned", token)


async def _async_perform(self: delayed.Job, token: str) -> None:
    sample_jobs.note("assigned", token)


AssignedLater.perform = _async_perform  # type: ignore[method-assign]


def test_a_perform_that_returns_a_coroutine_is_a_failed_attempt_never_a_deletion(db) -> None:
    sample_jobs.performed.clear()
    ids = [SneakyCoroutine.perform_later("a"), AssignedLater.perform_later("b")]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert Worker(max_claims=2).work_off(2) == (0, 2)
        gc.collect()
    assert sample_jobs.performed == [], "the coroutines' bodies never ran"
    for job_id in ids:
        row = db.row(job_id)
        assert row is not None, "not deleted: its perform did not run"
        assert row["attempts"] == 1 and row["locked_by"] is None and row["failed_at"] is None
        assert row["last_error"].startswith("TypeError: perform returned <coroutine object")
        assert "declare perform itself `async def`" in row["last_error"]
    assert not [w for w in caught if "never awaited" in str(w.message)], "closed, not left to warn"
