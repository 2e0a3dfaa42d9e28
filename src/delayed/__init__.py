"""pydelayed: background jobs kept in a SQL table, run at least once.

import delayed

class SendEmail(delayed.Job):
    queue = "mail"
    def perform(self, user_id: int) -> None: ...

SendEmail.perform_later(42)
SendEmail.set(priority="interactive", wait=30).perform_later(42)
"""

from __future__ import annotations

from . import events, jobs, tracing  # jobs: the operator API; the Table is jobs_table
from . import prometheus as _prometheus  # noqa: F401 - declares [prometheus]
from .backends import ClaimFilter, Outcome
from .config import Config, configure, get_config
from .db import get_engine
from .errors import (
    ConfigError,
    DelayedError,
    EnqueueError,
    HandlerError,
    SerializationError,
    UnknownJobError,
    UnknownPriorityError,
)
from .job import EnqueueRequest, Job, JobRecord, enqueue_many, job, registered_jobs
from .priority import Priority
from .schema import jobs as jobs_table
from .schema import metadata
from .web import settings as _web_settings  # noqa: F401 - declares [web] (no Starlette import)
from .worker import Worker

__all__ = [
    "ClaimFilter",
    "Config",
    "ConfigError",
    "DelayedError",
    "EnqueueError",
    "EnqueueRequest",
    "HandlerError",
    "Job",
    "JobRecord",
    "Outcome",
    "Priority",
    "SerializationError",
    "UnknownJobError",
    "UnknownPriorityError",
    "Worker",
    "configure",
    "enqueue_many",
    "events",
    "get_config",
    "get_engine",
    "job",
    "jobs",
    "jobs_table",
    "metadata",
    "migrate",
    "registered_jobs",
    "tracing",
]


def migrate() -> list[str]:
    """Create the jobs table and indexes on the configured database (idempotent)."""
    from .schema import get_table
    from .schema import migrate as _migrate

    return _migrate(get_engine(), get_table(get_config().table_name))
