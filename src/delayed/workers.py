"""The worker registry, read: who is registered, how old each heartbeat is, what each holds.

What `delayed workers` prints. Ages come from the database's clock (the heartbeats are
stamped with it), so the answer is the same from any host, whatever its own clock says.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from .backends import backend_for
from .config import Config
from .db import engine_for
from .schema import get_table, workers_table


@dataclass(frozen=True)
class WorkerInfo:
    """One registered worker process."""

    name: str
    hostname: str
    pid: int
    pool: str | None
    queues: list[str]
    started_at: datetime
    heartbeat_at: datetime
    heartbeat_age: float  # seconds, by the database's clock
    jobs: int  # live rows locked by its name right now
    dead: bool  # heartbeat older than worker_timeout: the next rescue gives its jobs back

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("started_at", "heartbeat_at"):
            data[key] = data[key].isoformat()
        return data


def _queues(text: str | None) -> list[str]:
    try:
        value = json.loads(text) if text else []
    except ValueError:
        return []
    return [str(q) for q in value] if isinstance(value, list) else []


def list_workers(config: Config, engine: sa.Engine | None = None) -> list[WorkerInfo]:
    """Every registered worker, oldest heartbeat first (raises the database's error)."""
    engine = engine if engine is not None else engine_for(config.database_url, config.pooler)
    jobs = get_table(config.table_name)
    backend = backend_for(engine, jobs)
    w = workers_table(config.table_name)
    with engine.connect() as conn:
        now = conn.execute(sa.select(backend.db_now_utc())).scalar_one()
        rows = conn.execute(sa.select(w).order_by(w.c.heartbeat_at, w.c.name)).mappings().all()
        held = dict(
            conn.execute(
                sa.select(jobs.c.locked_by, sa.func.count())
                .where(jobs.c.locked_by.is_not(None), jobs.c.failed_at.is_(None))
                .group_by(jobs.c.locked_by)
            ).all()
        )
    result = []
    for row in rows:
        age = max((now - row["heartbeat_at"]).total_seconds(), 0.0)
        result.append(
            WorkerInfo(
                name=row["name"],
                hostname=row["hostname"],
                pid=row["pid"],
                pool=row["pool"],
                queues=_queues(row["queues"]),
                started_at=row["started_at"],
                heartbeat_at=row["heartbeat_at"],
                heartbeat_age=round(age, 3),
                jobs=int(held.get(row["name"], 0)),
                dead=age > config.worker_timeout,
            )
        )
    return result
