"""Entries declared in code (`delayed.cron(...)`), for subprocess tests (`--require cron_code_entries`).

Import after `cron_jobs` (the job names are checked when the entries load).
"""

from __future__ import annotations

import delayed

delayed.cron(
    "code-nightly", "0 3 * * *", "tests.cron.tick", args=["nightly"], queue="cron", timezone="Europe/Zurich"
)
delayed.cron("code-every", every="1h", job="tests.cron.tick")
