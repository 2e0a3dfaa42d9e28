"""pydelayed: background jobs kept in a SQL table, run at least once.

import delayed

class SendEmail(delayed.Job):
    queue = "mail"
    def perform(self, user_id: int) -> None: ...

SendEmail.perform_later(42)
SendEmail.set(priority="interactive", wait=30).perform_later(42)
"""

from __future__ import annotations

from . import admin, events, tracing  # admin: the operator API (list, retry, discard, ...)
from . import prometheus as _prometheus  # noqa: F401 - declares [prometheus]
from .backends import ClaimFilter
from .callbacks import (
    AbortEnqueue,
    after_enqueue,
    after_perform,
    around_enqueue,
    around_perform,
    before_enqueue,
    before_perform,
)
from .config import Config, configure, get_config
from .db import get_engine
from .enqueue import EnqueueRequest, enqueue_many
from .errors import (
    ConfigError,
    DelayedError,
    EnqueueError,
    HandlerError,
    SerializationError,
    UnknownJobError,
    UnknownPriorityError,
)
from .job import Job, job
from .priority import Priority
from .record import EnqueueResult, JobRecord, Outcome
from .recurring import cron
from .registry import registered_jobs
from .retry import discard_on, retry_on
from .schema import get_table, metadata
from .schema import jobs as jobs_table
from .schema import migrate as _migrate
from .unique import Unique
from .web import settings as _web_settings  # noqa: F401 - declares [web] (no Starlette import)
from .worker import Worker

__all__ = [
    "AbortEnqueue",
    "ClaimFilter",
    "Config",
    "ConfigError",
    "DelayedError",
    "EnqueueError",
    "EnqueueRequest",
    "EnqueueResult",
    "HandlerError",
    "Job",
    "JobRecord",
    "Outcome",
    "Priority",
    "SerializationError",
    "Unique",
    "UnknownJobError",
    "UnknownPriorityError",
    "Worker",
    "admin",
    "after_enqueue",
    "after_perform",
    "around_enqueue",
    "around_perform",
    "before_enqueue",
    "before_perform",
    "configure",
    "cron",
    "discard_on",
    "enqueue_many",
    "events",
    "get_config",
    "get_engine",
    "job",
    "jobs_table",
    "metadata",
    "migrate",
    "registered_jobs",
    "retry_on",
    "tracing",
]


def migrate() -> list[str]:
    """Apply the pending schema steps on the configured database (idempotent); what it did."""
    return _migrate(get_engine(), get_table(get_config().table_name))
