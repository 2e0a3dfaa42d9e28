"""The quick-start job: run `python jobs.py` to enqueue, then `delayed work --require jobs`."""

from __future__ import annotations

import delayed


class SendWelcomeEmail(delayed.Job):
    queue = "mailers"
    priority = "user_visible"

    def perform(self, user_id: int, address: str) -> None:
        print(f"Sending the welcome email to user {user_id} at {address}")


@delayed.job(queue="reports", priority="reporting")
def nightly_report(day: str) -> None:
    print(f"Building the report for {day}")


if __name__ == "__main__":
    delayed.migrate()  # creates delayed_jobs in ./delayed.sqlite3 (the default database)
    ids = [
        SendWelcomeEmail.perform_later(42, "ada@example.com"),
        SendWelcomeEmail.set(priority="interactive").perform_later(7, "grace@example.com"),
        nightly_report.perform_later("2026-11-23"),
    ]
    print(f"Enqueued jobs {ids}")
