"""Callbacks and retry rules as declared on a class, checked without a database."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

import delayed
from delayed.config import build_config
from delayed.errors import JobDefinitionError
from delayed.record import JobRecord
from delayed.retry import failure_outcome, rule_for

calls: list[str] = []


class Parent(delayed.Job, abstract=True):
    @delayed.before_perform
    def parent_before(self) -> None:
        calls.append(f"parent_before{self.args}")

    @delayed.around_perform
    def parent_around(self, proceed) -> None:  # type: ignore[no-untyped-def]
        calls.append("parent_around>")
        proceed()
        calls.append("<parent_around")

    @delayed.after_perform
    def parent_after(self) -> None:
        calls.append("parent_after")


class Child(Parent, name="tests.unit.callbacks.child"):
    @delayed.before_perform
    def child_before(self) -> None:
        calls.append("child_before")

    @delayed.around_perform
    def child_around(self, proceed) -> None:  # type: ignore[no-untyped-def]
        calls.append("child_around>")
        proceed()
        calls.append("<child_around")

    @delayed.after_perform
    def child_after(self) -> None:
        calls.append("child_after")

    def perform(self, value: int) -> int:
        calls.append("perform")
        if value < 0:
            raise ValueError("negative")
        return value * 2


def test_perform_now_runs_the_callbacks_in_the_documented_order_and_returns_performs_value() -> None:
    calls.clear()
    assert Child.perform_now(21) == 42
    assert calls == [
        "parent_before(21,)",
        "child_before",
        "parent_around>",
        "child_around>",
        "perform",
        "<child_around",
        "<parent_around",
        "parent_after",
        "child_after",
    ]


def test_an_exception_skips_the_after_callbacks_and_reaches_the_caller_of_perform_now() -> None:
    calls.clear()
    with pytest.raises(ValueError, match="negative"):
        Child.perform_now(-1)
    assert "parent_after" not in calls and "child_after" not in calls
    assert calls[-1] == "perform"


class Skipping(delayed.Job, name="tests.unit.callbacks.skipping"):
    @delayed.around_perform
    def gate(self, proceed) -> None:  # type: ignore[no-untyped-def]
        calls.append("gate")

    @delayed.after_perform
    def after(self) -> None:
        calls.append("after")

    def perform(self) -> str:
        calls.append("perform")
        return "ran"


def test_an_around_callback_that_does_not_proceed_skips_perform_and_the_after_callbacks() -> None:
    calls.clear()
    assert Skipping.perform_now() is None
    assert calls == ["gate"]


class Overriding(Child, name="tests.unit.callbacks.overriding"):
    def parent_before(self) -> None:  # redefined without the decorator: still a callback, same place
        calls.append("overridden")


def test_a_redefined_callback_keeps_its_place_and_runs_the_override() -> None:
    calls.clear()
    Overriding.perform_now(1)
    assert calls[:2] == ["overridden", "child_before"]


def test_an_async_callback_on_a_sync_job_is_refused_at_definition() -> None:
    with pytest.raises(JobDefinitionError, match=r"Bad.hook \(@delayed.before_perform\) is `async def`"):

        class Bad(delayed.Job, name="tests.unit.callbacks.bad"):
            @delayed.before_perform
            async def hook(self) -> None: ...

            def perform(self) -> None: ...


# ----------------------------------------------------------------------------- retry rules
class Flaky(Exception):
    pass


class Gone(Exception):
    pass


@delayed.retry_on(Flaky, wait=30, attempts=3)
@delayed.retry_on(Exception, wait="polynomially_longer", attempts=10)
class Ruled(delayed.Job, name="tests.unit.callbacks.ruled"):
    def perform(self) -> None: ...


@delayed.discard_on(Gone)
@delayed.retry_on(ValueError, wait=timedelta(minutes=2), attempts=2)
class SubRuled(Ruled, name="tests.unit.callbacks.subruled"):
    pass


def _record(attempts: int, name: str) -> JobRecord:
    return JobRecord(
        id=1,
        priority=0,
        attempts=attempts,
        handler="{}",
        name=name,
        run_at=datetime(2026, 1, 1),
        locked_by="w",
    )


def test_rules_are_matched_top_to_bottom_the_class_before_its_parents() -> None:
    assert rule_for(Ruled, Flaky()).attempts == 3  # type: ignore[union-attr]
    assert rule_for(Ruled, KeyError()).attempts == 10  # type: ignore[union-attr]
    assert rule_for(SubRuled, ValueError()).attempts == 2  # type: ignore[union-attr]
    assert rule_for(SubRuled, Gone()).discard  # type: ignore[union-attr]
    assert rule_for(SubRuled, Flaky()).attempts == 3  # type: ignore[union-attr]
    assert rule_for(Ruled, KeyboardInterrupt()) is None


def test_a_retry_rule_sets_its_own_wait_and_attempt_limit_then_fails_as_usual() -> None:
    config = build_config(environ={}, overrides={"max_attempts": 25})
    now = datetime(2026, 1, 1)
    first = failure_outcome(_record(0, "tests.unit.callbacks.ruled"), "e", config, Ruled(), now, Flaky())
    assert (first.kind, first.attempts, first.run_at) == ("retry", 1, now + timedelta(seconds=30))
    poly = failure_outcome(_record(2, "tests.unit.callbacks.ruled"), "e", config, Ruled(), now, KeyError())
    assert poly.run_at == now + timedelta(seconds=3**4 + 2)
    last = failure_outcome(_record(2, "tests.unit.callbacks.ruled"), "e", config, Ruled(), now, Flaky())
    assert (last.kind, last.attempts) == ("fail", 3)
    gone = failure_outcome(_record(0, "tests.unit.callbacks.subruled"), "e", config, SubRuled(), now, Gone())
    assert gone.kind == "delete"


def test_bad_rules_are_refused_at_definition() -> None:
    with pytest.raises(TypeError, match="exception classes"):
        delayed.retry_on("ValueError")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="attempts=0"):
        delayed.retry_on(ValueError, attempts=0)
    with pytest.raises(ValueError):
        delayed.retry_on(ValueError, wait="soon")
