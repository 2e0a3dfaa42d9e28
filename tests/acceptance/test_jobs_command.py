"""`delayed.admin` and `delayed jobs`: find, read, retry, discard, unlock and count real rows.

Failed rows are made for real: a job raises inside `delayed.Worker(...).work_off()` and the
worker writes failed_at and last_error, as in production.
"""

from __future__ import annotations

import pytest

import delayed
from tests.helpers import run_delayed, subprocess_env
from tests.jobs.admin_jobs import BROKEN, fail_for_real


@pytest.fixture(autouse=True)
def _broken() -> None:
    BROKEN["mail"] = True


def test_delayed_jobs_in_a_real_process(db, tmp_path) -> None:
    (job_id,) = fail_for_real()
    config = tmp_path / "delayed.toml"
    config.write_text(f'[delayed]\ndatabase_url = "{db.url}"\n')
    env = subprocess_env()
    listed = run_delayed("jobs", "list", "--failed", "-c", str(config), env=env)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[1].split()[0] == str(job_id)
    refused = run_delayed("jobs", "discard", str(job_id), "-c", str(config), env=env)
    assert refused.returncode == 2 and "pass --yes" in refused.stderr
    assert db.row(job_id) is not None
    assert delayed.admin.retry(job_id).ids == [job_id]  # `import delayed; delayed.admin.retry(...)`
