"""The row type: one `delayed_jobs` row as workers, events and the operator API see it.

A leaf module: it imports nothing of pydelayed but errors and the clock, so every other
module may import it (River keeps its JobRow in `rivertype` for the same reason). It holds
no configuration and no registry: a record's priority name and alert thresholds are looked
up in `delayed.priority` (`job_alerts`), with the configuration passed in.

`Outcome` is what became of one claimed job (delete / retry / fail): the executor and the
supervisor's reclaim make them, the completer writes them through a backend.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from .errors import HandlerError
from .timeutil import utcnow


@dataclass
class JobRecord:
    """One row of delayed_jobs. The field order is the column order backends read rows in."""

    id: int
    priority: int
    attempts: int
    handler: str
    name: str
    run_at: datetime
    queue: str | None = None
    last_error: str | None = None
    locked_at: datetime | None = None
    locked_by: str | None = None
    failed_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    unique_key: str | None = None
    concurrency_key: str | None = None
    concurrency_limit: int | None = None
    finished_at: datetime | None = None  # kept results only (keep_finished)
    result: str | None = None  # its JSON return value
    _payload: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_mapping(cls, row: Any) -> JobRecord:
        """Build from a result row mapping (column name -> value)."""
        return cls(
            id=row["id"],
            priority=row["priority"],
            attempts=row["attempts"],
            handler=row["handler"],
            name=row["name"],
            run_at=row["run_at"],
            queue=row["queue"],
            last_error=row["last_error"],
            locked_at=row["locked_at"],
            locked_by=row["locked_by"],
            failed_at=row["failed_at"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            unique_key=row.get("unique_key"),
            concurrency_key=row.get("concurrency_key"),
            concurrency_limit=row.get("concurrency_limit"),
            finished_at=row.get("finished_at"),
            result=row.get("result"),
        )

    @property
    def payload(self) -> dict[str, Any]:
        """The decoded handler; HandlerError when it is not pydelayed's JSON."""
        if self._payload is None:
            self._payload = decode_handler(self.handler)
        return self._payload

    @property
    def job_id(self) -> str | None:
        """The job's uuid from its handler (stable across retries)."""
        try:
            return self.payload.get("job_id")
        except HandlerError:
            return None

    @property
    def age(self) -> float:
        """Seconds spent waiting: from run_at to pickup (or to now while waiting), never < 0."""
        end = self.locked_at if self.locked_at is not None else utcnow()
        return max((end - self.run_at).total_seconds(), 0.0)

    @property
    def run_time(self) -> float | None:
        """Seconds since the job was locked (picked up); None when it is not locked."""
        if self.locked_at is None:
            return None
        return (utcnow() - self.locked_at).total_seconds()


def decode_handler(handler: str) -> dict[str, Any]:
    """Parse and check a handler; the error says what is wrong with it."""
    try:
        payload = json.loads(handler)
    except (TypeError, ValueError) as exc:
        raise HandlerError(f"handler is not JSON ({exc}): {handler[:200]!r}") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("job"), str):
        raise HandlerError(f'handler has no "job" name: {handler[:200]!r}')
    if not isinstance(payload.get("args", []), list) or not isinstance(payload.get("kwargs", {}), dict):
        raise HandlerError(f"handler's args must be a list and kwargs an object: {handler[:200]!r}")
    return payload


@dataclass(frozen=True)
class Outcome:
    """What became of one claimed job, to be written by the completer.

    kind: "delete" (success, or a failure with destroy_failed_jobs), "retry" (attempts,
    run_at and last_error updated, lock cleared), "fail" (failed_at set, row kept) or
    "finish" (a success kept with keep_finished: finished_at and `result` set, lock cleared).
    Written only where the row is still locked by `locked_by`. A "fail" frees the row's
    unique key (so the job may be enqueued again) unless `hold_unique_key` (the class's
    `Unique(failed_holds_key=True)`).
    """

    kind: Literal["delete", "retry", "fail", "finish"]
    id: int
    locked_by: str
    attempts: int = 0
    run_at: datetime | None = None
    last_error: str | None = None
    hold_unique_key: bool = False
    leased: bool = False  # the row had a concurrency key: its lease is deleted with the outcome
    result: str | None = None  # "finish": the JSON return value


class EnqueueResult(list[int]):
    """What `enqueue_many` returns: the ids in input order, as the plain list it always was,
    plus `duplicates`, one flag per input: True where a unique job's key was taken (by a row
    already in the table or an earlier item of the same batch) and nothing was inserted; its
    id is then the existing row's."""

    def __init__(self, ids: Iterable[int] = (), duplicates: list[bool] | None = None) -> None:
        super().__init__(ids)
        self.duplicates: list[bool] = duplicates if duplicates is not None else [False] * len(self)

    @property
    def inserted(self) -> list[int]:
        """The ids of the rows this call inserted (duplicates left out)."""
        return [job_id for job_id, dup in zip(self, self.duplicates, strict=True) if not dup]
