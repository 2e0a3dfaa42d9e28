"""How unique keys and concurrency keys are computed (no database: delayed.unique, delayed.concurrency)."""

from __future__ import annotations

from datetime import datetime

import pytest

import delayed
from delayed.concurrency import resolve_key
from delayed.unique import check_explicit_key


class Named(delayed.Job, name="tests.unit.unique.named"):
    unique = delayed.Unique(by_args=["account"])

    def perform(self, account: int, note: str = "n") -> None: ...


AT = datetime(2026, 1, 1, 10, 15)


def key(
    unique: delayed.Unique, *args: object, queue: str = "q", run_at: datetime = AT, **kwargs: object
) -> str:
    return unique.key(Named, args, kwargs, queue, run_at)


def test_named_arguments_match_however_they_are_passed() -> None:
    unique = Named.unique
    assert unique is not None
    assert key(unique, 1) == key(unique, account=1) == key(unique, 1, "other note")
    assert key(unique, 1) != key(unique, 2)


def test_all_arguments_queue_and_period() -> None:
    every = delayed.Unique()
    assert key(every, 1, "a") != key(every, 1, "b")
    assert key(every, 1, queue="a") == key(every, 1, queue="b")
    by_queue = delayed.Unique(by_queue=True)
    assert key(by_queue, 1, queue="a") != key(by_queue, 1, queue="b")
    hourly = delayed.Unique(by_args=False, period="1h")
    assert key(hourly, 1) == key(hourly, 2, run_at=AT.replace(minute=59))
    assert key(hourly, 1) != key(hourly, 1, run_at=AT.replace(hour=11))


def test_bad_definitions_are_refused() -> None:
    with pytest.raises(TypeError, match="by_args"):
        delayed.Unique(by_args="account")
    with pytest.raises(ValueError, match="period"):
        delayed.Unique(period=0)
    with pytest.raises(ValueError, match="at most 255"):
        check_explicit_key("x" * 256)


def test_concurrency_keys() -> None:
    assert resolve_key("j", "customer:{0}", [7], {}) == "customer:7"
    assert resolve_key("j", "c:{who}", [], {"who": "a"}) == "c:a"
    assert resolve_key("j", lambda n, **kw: f"n{n % 2}", [3], {}) == "n1"
    assert resolve_key("j", lambda n: None, [3], {}) is None
    with pytest.raises(ValueError, match="concurrency_key"):
        resolve_key("j", "customer:{1}", [7], {})
    with pytest.raises(ValueError, match="concurrency_limit"):

        class Bad(delayed.Job, name="tests.unit.unique.bad"):
            concurrency_key = "k"
            concurrency_limit = 0

            def perform(self) -> None: ...


def test_the_decorator_takes_both() -> None:
    @delayed.job(
        name="tests.unit.unique.decorated",
        unique=delayed.Unique(by_args=["account"]),
        concurrency_key="acct:{0}",
        concurrency_limit=3,
    )
    def decorated(account: int, note: str = "") -> None: ...

    unique = decorated.unique
    assert unique is not None
    assert unique.key(decorated, [1], {"note": "a"}, "q", AT) == unique.key(
        decorated, [], {"account": 1}, "q", AT
    )
    assert resolve_key("d", decorated.concurrency_key, [5], {}) == "acct:5"
    assert decorated.concurrency_limit == 3
