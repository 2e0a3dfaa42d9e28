"""What the supervisor runs with: its pools and settings, read from the config and checked.

This is the one module that reads the supervisor's part of the config (`config.supervisor`,
`config.pools`); everything else takes the frozen `Settings` built here. `load_settings`
runs at start (a bad file is exit 2, before any child is forked) and again on HUP (a bad
file keeps the running configuration). It also does what must fail in the master rather
than in a crash loop of children: importing the user's job modules (`require`), the
`on_worker_boot` hook and, when tracing is on, checking that OpenTelemetry is installed.

What changes while the master runs (TTIN/TTOU, the crash-loop back-off) is not here: it
is the arbiter's `pools.PoolState`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..config import REENQUEUE_BUFFER, Config, PoolSettings, build_config
from ..errors import ConfigError, DelayedError
from ..loader import import_modules
from ..priority import resolve as resolve_priority
from ..recurring import CronEntry, load_entries
from ..tracing import check_available

# A job's lock expires REENQUEUE_BUFFER (30 s) after its max_run_time; from then on another
# worker may start it again. The master kills an overdue job's child max_run_time_grace after
# its max_run_time, and the kill must land, and the reclaim count that job's attempt, before
# the lock expires, or a second copy could start beside the first (and a job that always hangs
# would never use up its attempts). KILL_MARGIN is what they get: the loop looks once a
# second, and one reclaim try is bounded by its 10 s connect timeout. So the grace must stay
# strictly below 30 - 10 = 20 s.
KILL_MARGIN = 10.0
MAX_RUN_TIME_GRACE_LIMIT = REENQUEUE_BUFFER - KILL_MARGIN


@dataclass(frozen=True)
class Pool:
    """A group of identical children, as configured: what they work on and how many."""

    name: str
    workers: int
    max_claims: int
    queues: list[str] = field(default_factory=list)
    min_priority: int | str | None = None
    max_priority: int | str | None = None
    kind: str = "worker"  # or "monitor", "scheduler"


@dataclass(frozen=True)
class Settings:
    """Everything the master runs with; rebuilt from the file on HUP."""

    config: Config
    path: str | None
    pools: list[Pool]
    graceful_timeout: float
    max_memory_mb: int | None
    pidfile: str | None
    log_level: str
    log_file: str | None
    heartbeat_timeout: float
    max_run_time_grace: float
    on_worker_boot: Callable[[], Any] | None
    tracing: bool  # children instrument their Worker with OpenTelemetry
    cron_entries: tuple[CronEntry, ...] = ()  # checked in the master; the scheduler child runs them


def load_settings(path: str | None, environ: dict[str, str] | None = None) -> Settings:
    """Read and check everything; a ConfigError names the file and the key."""
    config = build_config(path, environ=environ)
    pools = _pools(config)
    sup = config.supervisor
    _check_grace(config)
    import_modules(config.require)
    # Every entry is checked here (after `require` registered the job classes), so a bad
    # schedule or job name is one exit 2 (or a refused HUP), never a crash-looping child.
    cron_entries = tuple(load_entries(config))
    if cron_entries and config.scheduler.enabled:
        pools.append(Pool("scheduler", 1, 1, kind="scheduler"))
    tracing = config.tracing.enabled
    if tracing:
        check_available()  # a missing extra is one clear exit 2, not a crash loop of children
    return Settings(
        config=config,
        path=path,
        pools=pools,
        graceful_timeout=sup.graceful_timeout,
        max_memory_mb=sup.max_memory_mb,
        pidfile=sup.pidfile,
        log_level=sup.log_level or config.log_level,
        log_file=sup.log_file,
        heartbeat_timeout=sup.heartbeat_timeout,
        max_run_time_grace=sup.max_run_time_grace,
        on_worker_boot=_boot_hook(config),
        tracing=tracing,
        cron_entries=cron_entries,
    )


def _pools(config: Config) -> list[Pool]:
    """The `[[pool]]` entries, each filled in from `[supervisor]` then `[delayed]`."""
    sup = config.supervisor
    default_claims = sup.max_claims or config.max_claims
    raw_pools = config.pools
    if not raw_pools:
        raw_pools = (PoolSettings(name="default", workers=sup.workers),)
    pools: list[Pool] = []
    for number, raw in enumerate(raw_pools, start=1):
        where = f"{config.source}: [[pool]] #{number}" if config.pools else f"{config.source}:"
        name = raw.name or f"pool-{number}"
        if any(p.name == name for p in pools):
            raise ConfigError(f"{where} name {name!r} is used by two pools; give each pool its own name")
        pool = Pool(
            name=name,
            workers=sup.workers if raw.workers is None else raw.workers,
            max_claims=raw.max_claims or default_claims,
            queues=list(config.queues if raw.queues is None else raw.queues),
            min_priority=config.min_priority if raw.min_priority is None else raw.min_priority,
            max_priority=config.max_priority if raw.max_priority is None else raw.max_priority,
        )
        for key in ("min_priority", "max_priority"):
            value = getattr(pool, key)
            if value is not None:
                try:
                    resolve_priority(value, config.priority_names)
                except DelayedError as exc:
                    raise ConfigError(f"{where} {key}: {exc}") from None
        pools.append(pool)
    if sup.monitor:
        pools.append(Pool("monitor", 1, 1, kind="monitor"))
    return pools


def _check_grace(config: Config) -> None:
    """Refuse a max_run_time_grace that would let the lock expire before the kill (see KILL_MARGIN)."""
    grace = config.supervisor.max_run_time_grace
    if grace >= MAX_RUN_TIME_GRACE_LIMIT:
        raise ConfigError(
            f"{config.source}: [supervisor] max_run_time_grace: {grace:g} s is too long; it must be "
            f"below {MAX_RUN_TIME_GRACE_LIMIT:g} s: a job's lock expires {REENQUEUE_BUFFER:g} s after "
            f"its max_run_time, and the master needs the last {KILL_MARGIN:g} s to kill the child and "
            "reclaim the job before another worker may start it again"
        )


def _boot_hook(config: Config) -> Callable[[], Any] | None:
    """Import `on_worker_boot` now, so a typo is a config error and not a crash loop."""
    target = config.supervisor.on_worker_boot
    if target is None:
        return None
    module_name, _, attr = target.partition(":")
    where = f"{config.source}: [supervisor] on_worker_boot"
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ConfigError(f"{where}: cannot import {module_name!r}: {exc}") from None
    hook = getattr(module, attr, None)
    if not callable(hook):
        raise ConfigError(f"{where}: {module_name!r} has no function {attr!r}")
    return hook
