"""ActiveJob-style callbacks on Job classes: what runs around enqueue and around perform.

Mark a method of a Job class with one of the six decorators::

    class Report(delayed.Job):
        @delayed.before_perform
        def log_start(self) -> None: ...

        @delayed.around_perform
        def timed(self, proceed) -> None:
            started = time.monotonic()
            proceed()                       # runs the inner callbacks and perform
            log.info("took %.3f s", time.monotonic() - started)

The order, the same for enqueue and perform (what a Rails user expects of ActiveJob):

1. every `before_*`, in declaration order, the parent class's first;
2. the `around_*` callbacks nested, the first declared outermost: each gets `proceed`, a
   callable that runs the rest of the chain and returns perform's value (an around that does
   not call it skips perform, and the after callbacks, as a halted ActiveJob chain does);
3. every `after_*`, in declaration order, parent first, only when perform (or the insert)
   returned normally: an exception skips them and goes on to the retry rules.

A subclass that redefines a callback method keeps its place in the order (callbacks are
called by name, so the override runs). `before_enqueue` (or an around that does not
proceed) aborts an enqueue by raising `delayed.AbortEnqueue`: `perform_later` then inserts
nothing and returns None. `enqueue_many` runs no enqueue callbacks, as ActiveJob's
`perform_all_later` does not. An async job's callbacks may be `async def` (they are
awaited); its around callbacks must be, since `proceed()` then returns an awaitable.

The collected callbacks are a class attribute (`_delayed_callbacks`, made when the class is
defined); the executor and the enqueue API call `run` / `run_async` / `enqueue`.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from .errors import DelayedError, JobDefinitionError

KINDS = (
    "before_enqueue",
    "around_enqueue",
    "after_enqueue",
    "before_perform",
    "around_perform",
    "after_perform",
)
_MARK = "__delayed_callback__"

F = TypeVar("F", bound=Callable[..., Any])


class AbortEnqueue(DelayedError):
    """Raise from a `before_enqueue` / `around_enqueue` callback to enqueue nothing."""


def _marker(kind: str) -> Callable[[F], F]:
    def mark(method: F) -> F:
        setattr(method, _MARK, kind)
        return method

    mark.__name__ = kind
    mark.__doc__ = f"Mark a Job method as a `{kind}` callback (see delayed.callbacks)."
    return mark


before_enqueue = _marker("before_enqueue")
around_enqueue = _marker("around_enqueue")
after_enqueue = _marker("after_enqueue")
before_perform = _marker("before_perform")
around_perform = _marker("around_perform")
after_perform = _marker("after_perform")


@dataclass(frozen=True)
class Callbacks:
    """A class's callbacks by kind: method names in calling order."""

    before_enqueue: tuple[str, ...] = ()
    around_enqueue: tuple[str, ...] = ()
    after_enqueue: tuple[str, ...] = ()
    before_perform: tuple[str, ...] = ()
    around_perform: tuple[str, ...] = ()
    after_perform: tuple[str, ...] = ()

    @property
    def perform_any(self) -> bool:
        return bool(self.before_perform or self.around_perform or self.after_perform)

    @property
    def enqueue_any(self) -> bool:
        return bool(self.before_enqueue or self.around_enqueue or self.after_enqueue)


NONE = Callbacks()


def collect(cls: type, is_async: bool) -> Callbacks:
    """The callbacks of `cls` and its bases: parent first, each class in definition order.

    Checked here, at class definition, so a wrong callback fails at import and not in a
    worker: a sync job's callbacks must be plain functions, an async job's around callbacks
    `async def`.
    """
    order: dict[str, str] = {}  # method name -> kind, in first-declared order
    for klass in reversed(cls.__mro__):
        for name, value in vars(klass).items():
            kind = getattr(value, _MARK, None)
            if kind is not None and name not in order:
                order[name] = kind
    if not order:
        return NONE
    by_kind: dict[str, list[str]] = {kind: [] for kind in KINDS}
    for name, kind in order.items():
        method = getattr(cls, name)
        asynchronous = inspect.iscoroutinefunction(method)
        where = f"{cls.__qualname__}.{name} (@delayed.{kind})"
        if asynchronous and (kind.endswith("_enqueue") or not is_async):
            place = "at enqueue" if kind.endswith("_enqueue") else "around a sync perform"
            raise JobDefinitionError(
                f"{where} is `async def` but runs {place}, where nothing awaits it; make it a plain `def`"
            )
        if kind == "around_perform" and is_async and not asynchronous:
            raise JobDefinitionError(
                f"{where} wraps an async perform: make it `async def` and `await proceed()`"
            )
        by_kind[kind].append(name)
    return Callbacks(**{kind: tuple(names) for kind, names in by_kind.items()})


def of(job: Any) -> Callbacks:
    return getattr(type(job), "_delayed_callbacks", NONE)


# ----------------------------------------------------------------------------- perform
def run(job: Any, perform: Callable[[], Any]) -> Any:
    """Run `perform()` inside the job's perform callbacks; returns perform's value."""
    callbacks = of(job)
    if not callbacks.perform_any:
        return perform()
    for name in callbacks.before_perform:
        getattr(job, name)()
    ran, result = _around(job, callbacks.around_perform, perform)
    if ran:
        for name in callbacks.after_perform:
            getattr(job, name)()
    return result


def _around(job: Any, names: tuple[str, ...], inner: Callable[[], Any]) -> tuple[bool, Any]:
    """Nest `inner` in the around callbacks named; (whether inner ran, its value)."""
    state: dict[str, Any] = {}

    def innermost() -> Any:
        state["result"] = inner()
        return state["result"]

    call = innermost
    for name in reversed(names):
        call = _proceeding(getattr(job, name), call)
    call()
    return "result" in state, state.get("result")


def _proceeding(
    callback: Callable[[Callable[[], Any]], Any], proceed: Callable[[], Any]
) -> Callable[[], Any]:
    return lambda: callback(proceed)


async def run_async(job: Any, perform: Callable[[], Awaitable[Any]]) -> Any:
    """`await perform()` inside the job's perform callbacks (async callbacks are awaited)."""
    callbacks = of(job)
    if not callbacks.perform_any:
        return await perform()
    for name in callbacks.before_perform:
        await _maybe_await(getattr(job, name)())
    state: dict[str, Any] = {}

    async def innermost() -> Any:
        state["result"] = await perform()
        return state["result"]

    call: Callable[[], Awaitable[Any]] = innermost
    for name in reversed(callbacks.around_perform):
        call = _proceeding(getattr(job, name), call)
    await call()
    if "result" in state:
        for name in callbacks.after_perform:
            await _maybe_await(getattr(job, name)())
    return state.get("result")


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


# ----------------------------------------------------------------------------- enqueue
def enqueue(job: Any, insert: Callable[[], int]) -> int | None:
    """Run `insert()` inside the job's enqueue callbacks; the new id, or None when aborted."""
    callbacks = of(job)
    if not callbacks.enqueue_any:
        return insert()
    try:
        for name in callbacks.before_enqueue:
            getattr(job, name)()
        ran, job_id = _around(job, callbacks.around_enqueue, insert)
    except AbortEnqueue:
        return None
    if not ran:
        return None
    for name in callbacks.after_enqueue:
        getattr(job, name)()
    return job_id
