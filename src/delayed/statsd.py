"""StatsD: forward pydelayed's events as timings, counters and gauges over UDP.

Enabled by `[statsd] host = "..."` (plus `port`, default 8125, `prefix`, default
"delayed", and `sample_rate` for per-job timings and counters). `delayed work` and
`delayed monitor` call `install(config)`; a supervisor calls it in each child.

Plain StatsD has no tags, so the queue and the priority name are the last two parts of
the metric name. With the default prefix:

| event                          | StatsD metric                                   | type    |
|--------------------------------|-------------------------------------------------|---------|
| delayed.job.run                | delayed.job.run.<queue>.<priority>              | timing  |
| delayed.job.error              | delayed.job.error.<queue>.<priority>            | counter |
| delayed.job.failure            | delayed.job.failure.<queue>.<priority>          | counter |
| delayed.job.discarded          | delayed.job.discarded.<queue>.<priority>        | counter |
| delayed.job.enqueue            | delayed.job.enqueue (one per batch)             | timing  |
|                                | delayed.job.enqueued (+ jobs in the batch)      | counter |
| delayed.worker.reserve_jobs    | delayed.worker.reserve_jobs                     | timing  |
| delayed.monitor.run            | delayed.monitor.run                             | timing  |
| delayed.job.<metric> (monitor) | delayed.job.<metric>.<queue>.<priority>         | gauge   |
| delayed.supervisor.child_spawned / child_exited / job_killed | same name      | counter |
| delayed.worker.rescued         | delayed.worker.rescued (+1 per dead worker)     | counter |
|                                | delayed.worker.rescued_jobs (+ its jobs)        | counter |
| delayed.worker.fenced          | delayed.worker.fenced                           | counter |

<queue> is the queue with every character outside `A-Z a-z 0-9 _ -` replaced by `_`
(so "mail.eu west" becomes "mail_eu_west"); a job without a queue reports `_none`, an
empty queue name `_empty`. <priority> is the priority's range name (`interactive`,
`user_visible`, ... or your `priority_names`); a negative priority counts as the lowest
name, as in the monitor. Graphite-style wildcards aggregate: `delayed.job.run.*.*`.

Sending never blocks or raises into a job: the UDP socket is non-blocking, every send is
guarded, and a host that does not resolve at start-up disables StatsD with a logged error.
The client is made per process (after any fork) on first use.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from statsd import StatsClient

from . import events
from .config import Config, get_config
from .monitor import METRICS
from .priority import bucket_name

log = logging.getLogger("delayed.statsd")

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")

SUPERVISOR_COUNTERS = (
    "delayed.supervisor.child_spawned",
    "delayed.supervisor.child_exited",
    "delayed.supervisor.job_killed",
)


def metric_part(value: Any) -> str:
    """One dot-free, space-free part of a metric name (queue or priority name)."""
    if value is None:
        return "_none"
    text = str(value)
    if text == "":
        return "_empty"
    return _UNSAFE.sub("_", text)


class _NonBlockingClient(StatsClient):
    """The `statsd` package's UDP client with a non-blocking socket (a full buffer drops)."""

    def __init__(self, host: str, port: int, prefix: str | None) -> None:
        super().__init__(host, port, prefix=prefix)
        self._sock.setblocking(False)


@dataclass(frozen=True)
class Settings:
    host: str
    port: int
    prefix: str | None
    sample_rate: float


class Forwarder:
    """Turns events into StatsD packets; holds one client per process."""

    def __init__(self, settings: Settings, priority_names: Mapping[str, int]) -> None:
        self.settings = settings
        self.priority_names = dict(priority_names)
        self._client: StatsClient | None = None
        self._pid = 0
        self._broken = False
        self._lock = threading.Lock()
        self._unsubscribers: list[Callable[[], None]] = []

    # -- the client ------------------------------------------------------------------------
    def client(self) -> StatsClient | None:
        """The client for this process, made on first use (never inherited through fork)."""
        pid = os.getpid()
        if self._client is not None and self._pid == pid:
            return self._client
        with self._lock:
            if self._pid != pid:
                self._client, self._broken, self._pid = None, False, pid
            if self._client is None and not self._broken:
                s = self.settings
                try:
                    self._client = _NonBlockingClient(s.host, s.port, s.prefix)
                except OSError as exc:
                    self._broken = True
                    log.error(
                        "StatsD disabled in this process: cannot resolve [statsd] host %r port %s (%s)",
                        s.host,
                        s.port,
                        exc,
                    )
            return self._client

    def close(self) -> None:
        with self._lock:
            if self._client is not None and self._pid == os.getpid():
                self._client.close()
            self._client = None

    def _send(self, kind: str, stat: str, value: float, sampled: bool = False) -> None:
        client = self.client()
        if client is None:
            return
        rate = self.settings.sample_rate if sampled else 1
        try:
            if kind == "timing":
                client.timing(stat, value, rate=rate)
            elif kind == "incr":
                client.incr(stat, int(value), rate=rate)
            else:
                client.gauge(stat, value)
        except Exception:  # never let a metric break a job
            log.debug("StatsD send of %s failed", stat, exc_info=True)

    # -- names -------------------------------------------------------------------------------
    def _job_suffix(self, payload: Mapping[str, Any]) -> str:
        priority = payload.get("priority")
        if isinstance(priority, int):
            name: str | None = bucket_name(priority, self.priority_names)
        else:  # already a name (or missing)
            name = priority
        return f"{metric_part(payload.get('queue'))}.{metric_part(name)}"

    # -- subscribers -------------------------------------------------------------------------
    def on_job_run(self, event: events.Event) -> None:
        self._send("timing", f"job.run.{self._job_suffix(event.payload)}", event.duration_ms, sampled=True)

    def on_job_error(self, event: events.Event) -> None:
        self._send("incr", f"job.error.{self._job_suffix(event.payload)}", 1, sampled=True)

    def on_job_failure(self, event: events.Event) -> None:
        self._send("incr", f"job.failure.{self._job_suffix(event.payload)}", 1, sampled=True)

    def on_job_discarded(self, event: events.Event) -> None:
        self._send("incr", f"job.discarded.{self._job_suffix(event.payload)}", 1, sampled=True)

    def on_enqueue(self, event: events.Event) -> None:
        self._send("timing", "job.enqueue", event.duration_ms, sampled=True)
        count = event.payload.get("count")
        if count:
            self._send("incr", "job.enqueued", count, sampled=True)

    def on_reserve(self, event: events.Event) -> None:
        self._send("timing", "worker.reserve_jobs", event.duration_ms, sampled=True)

    def on_monitor_run(self, event: events.Event) -> None:
        self._send("timing", "monitor.run", event.duration_ms)

    def on_gauge(self, event: events.Event) -> None:
        metric = event.name.rsplit(".", 1)[-1]
        queue, priority = event.payload.get("queue"), event.payload.get("priority")
        stat = f"job.{metric}.{metric_part(queue)}.{metric_part(priority)}"
        self._send("gauge", stat, event.payload.get("value") or 0)

    def on_supervisor(self, event: events.Event) -> None:
        self._send("incr", event.name.removeprefix("delayed."), 1)

    def on_rescued(self, event: events.Event) -> None:
        """A dead worker's jobs were given back (liveness.py / rescue.py): one per worker, and
        the jobs, so an alert can fire on any rescue and a graph shows how much was at stake."""
        self._send("incr", "worker.rescued", 1)
        self._send("incr", "worker.rescued_jobs", int(event.payload.get("count", 0)))

    def on_fenced(self, event: events.Event) -> None:
        self._send("incr", "worker.fenced", 1)

    def subscribe(self) -> None:

        routes: list[tuple[str, Callable[[events.Event], None]]] = [
            ("delayed.job.run", self.on_job_run),
            ("delayed.job.error", self.on_job_error),
            ("delayed.job.failure", self.on_job_failure),
            ("delayed.job.discarded", self.on_job_discarded),
            ("delayed.job.enqueue", self.on_enqueue),
            ("delayed.worker.reserve_jobs", self.on_reserve),
            ("delayed.monitor.run", self.on_monitor_run),
            ("delayed.worker.rescued", self.on_rescued),
            ("delayed.worker.fenced", self.on_fenced),
        ]
        routes += [(f"delayed.job.{metric}", self.on_gauge) for metric in METRICS]
        routes += [(name, self.on_supervisor) for name in SUPERVISOR_COUNTERS]
        self._unsubscribers = [events.subscribe(name, callback) for name, callback in routes]

    def unsubscribe(self) -> None:
        for unsubscribe in self._unsubscribers:
            unsubscribe()
        self._unsubscribers = []


_installed: Forwarder | None = None
_install_lock = threading.Lock()


def settings_from(config: Config) -> Settings | None:
    """The `[statsd]` settings, or None when no host is set (StatsD disabled)."""
    section = config.statsd
    if not section.host:
        return None
    prefix = section.prefix or None
    return Settings(section.host, int(section.port), prefix, float(section.sample_rate))


def install(config: Config | None = None) -> Forwarder | None:
    """Forward events to StatsD per `[statsd]`; None (and nothing subscribed) when disabled.

    Idempotent: calling again with the same settings keeps the existing forwarder; with
    different settings (or StatsD now disabled) it replaces it.
    """
    global _installed
    config = config if config is not None else get_config()
    settings = settings_from(config)
    with _install_lock:
        if _installed is not None:
            if settings == _installed.settings and dict(config.priority_names) == _installed.priority_names:
                return _installed
            _installed.unsubscribe()
            _installed.close()
            _installed = None
        if settings is None:
            return None
        forwarder = Forwarder(settings, config.priority_names)
        forwarder.subscribe()
        _installed = forwarder
        log.info(
            "StatsD metrics to %s:%s with prefix %r", settings.host, settings.port, settings.prefix or ""
        )
        return forwarder


def uninstall() -> None:
    """Stop forwarding and close the socket (tests, or a process turning StatsD off)."""
    global _installed
    with _install_lock:
        if _installed is not None:
            _installed.unsubscribe()
            _installed.close()
            _installed = None
