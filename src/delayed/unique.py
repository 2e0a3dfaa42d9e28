"""Unique jobs: which enqueues count as "the same job", as a key stored on the row.

`class SyncAccount(delayed.Job): unique = delayed.Unique(by_args=True)` makes every enqueue
carry a `unique_key`: a digest of the job name, the chosen arguments (canonical JSON), the
queue (by_queue) and the start of the `run_at` window (period). The database does the rest:
a UNIQUE index on the column and an atomic insert-or-skip in each backend, so two processes
enqueueing at the same moment never both insert (no check-then-insert anywhere). A row
frees its key when it is deleted (success) and when it fails, unless failed_holds_key.
`Job.set(unique_key="...")` gives a key directly (stored as given; it is global, shared by
every job class that uses it).
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .timeutil import to_seconds

KEY_LIMIT = 255  # the column's width
_EPOCH = datetime(1970, 1, 1)
_canonical = json.JSONEncoder(separators=(",", ":"), sort_keys=True, allow_nan=False).encode


@dataclass(frozen=True)
class Unique:
    """How enqueues of one job class are told apart.

    by_args: True (all arguments), False (none: one job of the class at a time) or the names
    of perform's parameters that count (positional or keyword, defaults applied).
    by_queue: the queue is part of the key. period: a duration ("1h", seconds, timedelta):
    one job per window of `run_at` (windows start at the epoch, UTC). failed_holds_key: a
    failed row keeps its key, so the job cannot be enqueued again until it is retried or
    discarded (default: a failure frees the key).
    """

    by_args: bool | Sequence[str] = True
    by_queue: bool = False
    period: Any = None
    failed_holds_key: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.by_args, bool):
            if isinstance(self.by_args, str) or not all(isinstance(n, str) for n in self.by_args):
                raise TypeError(
                    f"Unique(by_args=...) takes True, False or parameter names, got {self.by_args!r}"
                )
            object.__setattr__(self, "by_args", tuple(self.by_args))
        if self.period is not None and to_seconds(self.period) <= 0:
            raise ValueError(f"Unique(period=...) must be a positive duration, got {self.period!r}")

    def check(self, job_class: type, where: str) -> None:
        """Refuse names perform does not take (at class definition, not at the first enqueue)."""
        if isinstance(self.by_args, bool):
            return
        params = perform_signature(job_class).parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        unknown = [n for n in self.by_args if n not in params and not takes_any]
        if unknown:
            raise TypeError(f"{where}: Unique(by_args=...) names {unknown}, which perform() does not take")

    def key(
        self,
        job_class: Any,
        args: Sequence[Any],
        kwargs: dict[str, Any],
        queue: str | None,
        run_at: datetime,
    ) -> str:
        """The row's unique_key: a sha256 of (name, arguments, queue, window) as hex."""
        parts: list[Any] = [job_class.job_name]
        if self.by_args is True:
            parts.append({"args": list(args), "kwargs": kwargs})
        elif self.by_args:
            parts.append(_named_arguments(perform_signature(job_class), args, kwargs, self.by_args))
        else:
            parts.append(None)
        parts.append(queue if self.by_queue else None)
        if self.period is not None:
            window = to_seconds(self.period)
            since_epoch = (run_at - _EPOCH).total_seconds()
            parts.append(int(since_epoch // window * window))
        else:
            parts.append(None)
        return hashlib.sha256(_canonical(parts).encode()).hexdigest()


def perform_signature(job_class: Any) -> inspect.Signature:
    """perform's parameters without self; a @delayed.job class's are its function's."""
    func = job_class.__dict__.get("func")
    if isinstance(func, staticmethod):
        return inspect.signature(func.__func__)
    signature = inspect.signature(job_class.perform)
    return signature.replace(parameters=list(signature.parameters.values())[1:])


def _named_arguments(
    signature: inspect.Signature, args: Sequence[Any], kwargs: dict[str, Any], names: Sequence[str]
) -> dict[str, Any]:
    """The chosen parameters by name, however they were passed, defaults included."""
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise TypeError(f"arguments do not match perform(): {exc}") from None
    bound.apply_defaults()
    values = dict(bound.arguments)
    for name, param in signature.parameters.items():
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            values.update(values.pop(name, {}))
    return {name: values.get(name) for name in names}


def check_explicit_key(key: Any) -> str:
    """`set(unique_key=...)`: a non-empty string that fits the column."""
    if not isinstance(key, str) or not key:
        raise TypeError(f"set(unique_key=...) takes a non-empty string, got {key!r}")
    if len(key) > KEY_LIMIT:
        raise ValueError(f"set(unique_key=...) is {len(key)} characters; at most {KEY_LIMIT} fit the column")
    return key
