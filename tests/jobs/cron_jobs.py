"""Job classes for the recurring-jobs tests (importable by subprocesses as `--require cron_jobs`).

`Tick` writes the tick it serves (`self.record.run_at`) to `cron_seen`, in its own
transaction, so a test can see that the job learned its tick.
"""

from __future__ import annotations

import sqlalchemy as sa

import delayed

SEEN_DDL = "CREATE TABLE IF NOT EXISTS cron_seen (label VARCHAR(64) NOT NULL, run_at VARCHAR(40) NOT NULL)"


class Tick(delayed.Job, name="tests.cron.tick"):
    """Does nothing; its rows (run_at = the tick) are what the tests count."""

    def perform(self, *args: object, **kwargs: object) -> None:
        return None


class SeeTick(delayed.Job, name="tests.cron.see_tick"):
    """Records the tick it serves under `label`."""

    def perform(self, label: str) -> None:
        assert self.record is not None
        engine = delayed.get_engine()
        with engine.begin() as conn:
            conn.exec_driver_sql(SEEN_DDL)
            conn.execute(
                sa.text("INSERT INTO cron_seen (label, run_at) VALUES (:label, :run_at)"),
                {"label": label, "run_at": self.record.run_at.isoformat()},
            )
