"""The event bus: exact and regex subscriptions, durations, and isolation from raising subscribers."""

from __future__ import annotations

import re

import pytest

from delayed import events


def test_exact_and_regex_subscriptions_and_unsubscribe() -> None:
    exact: list[events.Event] = []
    pattern: list[events.Event] = []
    off_exact = events.subscribe("delayed.test.one", exact.append)
    off_pattern = events.subscribe(re.compile(r"^delayed\.test\."), pattern.append)
    events.emit("delayed.test.one", value=1)
    events.emit("delayed.test.two", value=2)
    off_exact()
    events.emit("delayed.test.one", value=3)
    off_pattern()
    events.emit("delayed.test.one", value=4)
    assert [e.payload["value"] for e in exact] == [1]
    assert [e.payload["value"] for e in pattern] == [1, 2, 3]
    assert not events.has_listeners("delayed.test.one")


def test_instrument_measures_and_reports_errors() -> None:
    seen: list[events.Event] = []
    off = events.subscribe("delayed.test.timed", seen.append)
    try:
        with events.instrument("delayed.test.timed", a=1) as payload:
            payload["b"] = 2
            sum(range(10000))
        with pytest.raises(ValueError), events.instrument("delayed.test.timed"):
            raise ValueError("inside")
    finally:
        off()
    assert seen[0].payload == {"a": 1, "b": 2}
    assert seen[0].duration > 0 and seen[0].error is None
    assert isinstance(seen[1].error, ValueError)


def test_raising_subscriber_does_not_break_emitter_or_others(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[events.Event] = []

    def bad(event: events.Event) -> None:
        raise RuntimeError("broken subscriber")

    offs = [events.subscribe("delayed.test.x", bad), events.subscribe("delayed.test.x", seen.append)]
    try:
        events.emit("delayed.test.x")
        with events.instrument("delayed.test.x"):
            pass
    finally:
        for off in offs:
            off()
    assert len(seen) == 2
    assert "broken subscriber" in caplog.text
