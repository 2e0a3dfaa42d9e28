"""Insert-or-skip for unique jobs, shared by every way of inserting rows.

Rows without a `unique_key` are inserted as always. Keyed rows go through the dialect's
atomic insert-or-skip (the UNIQUE index decides, never a read before the write): the first
row of a key within the batch is offered, later ones are duplicates of it. A key the
database skipped belongs to a row another transaction wrote: its id is read back. When that
row is gone by then (it ran and was deleted in between), the key is free again and the row
is offered once more, a bounded number of times.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..errors import EnqueueError
from ..record import EnqueueResult

Rows = list[dict[str, Any]]
# Offer keyed rows; answer {key: (id, inserted)} for the keys the statement saw (the
# inserted ones at least; MariaDB's form also answers the existing ids).
InsertOrSkip = Callable[[Rows], dict[str, tuple[int, bool]]]
FindExisting = Callable[[Sequence[str]], dict[str, int]]

_TRIES = 5


# The columns an enqueued row carries (EnqueueRequest.row()), in the order every insert sends them.
INSERT_COLUMNS = (
    "priority",
    "attempts",
    "handler",
    "run_at",
    "queue",
    "name",
    "created_at",
    "updated_at",
    "unique_key",
    "concurrency_key",
    "concurrency_limit",
)
OPTIONAL_COLUMNS = ("unique_key", "concurrency_key", "concurrency_limit")


def sent_columns(rows: Rows, columns: Sequence[str]) -> list[str]:
    """`columns` minus the step-4 columns that are NULL in every row: a plain enqueue names
    none of them, so it still works on a table not yet migrated to step 4 (and sends less)."""
    return [c for c in columns if c not in OPTIONAL_COLUMNS or any(row.get(c) is not None for row in rows)]


def without_unset(rows: Rows) -> Rows:
    """The rows without the step-4 keys that are NULL in every row (see sent_columns)."""
    unset = [c for c in OPTIONAL_COLUMNS if all(row.get(c) is None for row in rows)]
    if not unset:
        return rows
    return [{k: v for k, v in row.items() if k not in unset} for row in rows]


def has_unique(rows: Rows) -> bool:
    """Whether any row carries a unique key (the plain path is taken otherwise)."""
    return any(row.get("unique_key") is not None for row in rows)


def insert_deduplicated(
    rows: Rows,
    insert_plain: Callable[[Rows], list[int]],
    insert_or_skip: InsertOrSkip,
    find_existing: FindExisting,
) -> EnqueueResult:
    """Insert `rows`; ids in input order, with `duplicates` saying which were skipped."""
    ids: list[int | None] = [None] * len(rows)
    duplicates = [False] * len(rows)
    plain_at: list[int] = []
    first_of: dict[str, int] = {}  # key -> index of its first row in the batch
    for index, row in enumerate(rows):
        key = row.get("unique_key")
        if key is None:
            plain_at.append(index)
        elif key in first_of:
            duplicates[index] = True
        else:
            first_of[key] = index
    if plain_at:
        for index, job_id in zip(plain_at, insert_plain([rows[i] for i in plain_at]), strict=True):
            ids[index] = job_id
    found = _offer_keys(rows, first_of, insert_or_skip, find_existing)
    for key, index in first_of.items():
        ids[index], inserted = found[key]
        duplicates[index] = not inserted
    for index, row in enumerate(rows):
        if ids[index] is None:
            ids[index] = found[row["unique_key"]][0]
    return EnqueueResult([int(i) for i in ids if i is not None], duplicates)


def _offer_keys(
    rows: Rows, first_of: dict[str, int], insert_or_skip: InsertOrSkip, find_existing: FindExisting
) -> dict[str, tuple[int, bool]]:
    found: dict[str, tuple[int, bool]] = {}
    pending = list(first_of)
    for _ in range(_TRIES):
        if not pending:
            return found
        answered = insert_or_skip([rows[first_of[key]] for key in pending])
        found.update(answered)
        skipped = [key for key in pending if key not in answered]
        existing = find_existing(skipped) if skipped else {}
        for key, job_id in existing.items():
            found[key] = (job_id, False)
        pending = [key for key in skipped if key not in existing]
    if pending:
        raise EnqueueError(
            f"unique keys {pending[:3]} were taken and freed {_TRIES} times in a row while enqueueing; "
            "try again"
        )
    return found
