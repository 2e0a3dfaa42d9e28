"""Lifecycle events: a tiny publish/subscribe with durations, like ActiveSupport::Notifications.

Names: `delayed.job.enqueue` (duration), `delayed.job.run` (duration), `delayed.job.error`,
`delayed.job.failure`, `delayed.worker.reserve_jobs` (duration), and those added by other
modules. A subscriber that raises is logged and skipped: it never breaks a worker or an
enqueue. With no subscriber for a name, emitting costs a dictionary lookup.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("delayed.events")


@dataclass
class Event:
    """One occurrence: `duration` is in seconds (0.0 for instant events)."""

    name: str
    payload: dict[str, Any]
    start: float = 0.0
    end: float = 0.0
    error: BaseException | None = None

    @property
    def duration(self) -> float:
        return self.end - self.start

    @property
    def duration_ms(self) -> float:
        return (self.end - self.start) * 1000.0


Callback = Callable[[Event], Any]


@dataclass
class _Subscription:
    pattern: str | re.Pattern[str]
    callback: Callback

    def matches(self, name: str) -> bool:
        if isinstance(self.pattern, str):
            return self.pattern == name
        return self.pattern.search(name) is not None


@dataclass
class _Registry:
    subscriptions: list[_Subscription] = field(default_factory=list)
    cache: dict[str, list[_Subscription]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


_registry = _Registry()


def subscribe(pattern: str | re.Pattern[str], callback: Callback) -> Callable[[], None]:
    """Call `callback(event)` for every event whose name equals `pattern` (or matches a regex).

    Returns a function that removes the subscription.
    """
    subscription = _Subscription(pattern, callback)
    with _registry.lock:
        _registry.subscriptions.append(subscription)
        _registry.cache.clear()

    def unsubscribe() -> None:
        with _registry.lock:
            if subscription in _registry.subscriptions:
                _registry.subscriptions.remove(subscription)
            _registry.cache.clear()

    return unsubscribe


def _listeners(name: str) -> list[_Subscription]:
    listeners = _registry.cache.get(name)
    if listeners is None:
        with _registry.lock:
            listeners = [s for s in _registry.subscriptions if s.matches(name)]
            _registry.cache[name] = listeners
    return listeners


def has_listeners(name: str) -> bool:
    """True when something subscribed to `name`: lets emitters skip building payloads."""
    return bool(_listeners(name))


def publish(event: Event) -> None:
    """Deliver a finished event to its subscribers; their exceptions are logged, not raised."""
    for subscription in _listeners(event.name):
        try:
            subscription.callback(event)
        except Exception:
            log.exception("subscriber %r of %s raised; ignored", subscription.callback, event.name)


def emit(name: str, **payload: Any) -> None:
    """An instant event (no duration)."""
    if not _listeners(name):
        return
    now = time.perf_counter()
    publish(Event(name, payload, now, now))


@contextmanager
def instrument(name: str, **payload: Any) -> Iterator[dict[str, Any]]:
    """Time a block and publish it as `name`; the block may add to the yielded payload.

    The event is published even when the block raises (with `error` set), and the
    exception goes on.
    """
    if not _listeners(name):
        yield payload
        return
    event = Event(name, payload, time.perf_counter())
    try:
        yield payload
    except BaseException as exc:
        event.error = exc
        raise
    finally:
        event.end = time.perf_counter()
        publish(event)
