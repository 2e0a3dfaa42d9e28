"""Async job classes the tests run (an event loop per worker process, delayed.eventloop)."""

from __future__ import annotations

import asyncio
import threading
import time

import delayed

state: dict[str, int] = {"running": 0, "peak": 0, "done": 0}
log: list[str] = []
async_started = threading.Event()
sync_started = threading.Event()


def reset() -> None:
    state.update(running=0, peak=0, done=0)
    log.clear()
    async_started.clear()
    sync_started.clear()


class Nap(delayed.Job, name="tests.async.nap"):
    """Counts how many naps run at once (all on the one loop thread: plain ints suffice)."""

    async def perform(self, seconds: float) -> None:
        state["running"] += 1
        state["peak"] = max(state["peak"], state["running"])
        try:
            await asyncio.sleep(seconds)
        finally:
            state["running"] -= 1
        state["done"] += 1


class WaitsForSync(delayed.Job, name="tests.async.waits_for_sync"):
    async def perform(self) -> str:
        async_started.set()
        deadline = time.monotonic() + 10
        while not sync_started.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        log.append(f"async saw sync: {sync_started.is_set()}")
        return "ok"


class WaitsForAsync(delayed.Job, name="tests.async.waits_for_async"):
    def perform(self) -> None:
        sync_started.set()
        log.append(f"sync saw async: {async_started.wait(10)}")


class Hangs(delayed.Job, name="tests.async.hangs"):
    max_run_time = 0.3

    async def perform(self) -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            log.append("cancelled")
            raise
        log.append("woke up")  # never: cancelled at max_run_time


class Hooked(delayed.Job, name="tests.async.hooked"):
    @delayed.before_perform
    async def before(self) -> None:
        await asyncio.sleep(0)
        log.append(f"before {self.args}")

    @delayed.around_perform
    async def around(self, proceed) -> None:  # type: ignore[no-untyped-def]
        log.append("around>")
        await proceed()
        log.append("<around")

    @delayed.after_perform
    def after(self) -> None:  # a plain def is fine on an async job
        log.append("after")

    async def perform(self, value: int) -> int:
        log.append("perform")
        return value + 1


@delayed.job(name="tests.async.decorated")
async def decorated(value: int) -> int:
    await asyncio.sleep(0)
    log.append(f"decorated {value}")
    return value


class Sleeps(delayed.Job, name="tests.async.sleeps"):
    """Runs until cancelled (its max_run_time is the default, hours)."""

    async def perform(self) -> None:
        try:
            await asyncio.sleep(300)
        except asyncio.CancelledError:
            log.append("cancelled")
            raise
