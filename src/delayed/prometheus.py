"""Prometheus metrics: the table's gauges at scrape time, and the workers' counters.

    pip install 'pydelayed[prometheus]'
    delayed monitor --prometheus 127.0.0.1:9187 -c delayed.toml   # or [prometheus] bind

Two kinds of metric, documented in docs/observability.md:

- Gauges from the table (`delayed_jobs{queue,priority,state}`, ages, thresholds), computed
  when Prometheus scrapes, from the monitor's query set run at most once per `[prometheus]
  cache` seconds (delayed.web.snapshot), so many scrapers (or a dashboard beside them) cost
  one query set.
- Counters and a histogram of job runs (`delayed_job_duration_seconds`,
  `delayed_jobs_performed_total`, `..._errored_total`, `..._failed_total`), fed by the
  events `delayed.job.run`, `delayed.job.error` and `delayed.job.failure`. A supervisor's
  children are separate processes, so they use prometheus_client's multiprocess mode: each
  process writes its values to a memory-mapped file in `[prometheus] multiproc_dir`
  (written at once, so a killed child loses nothing), and the exporter sums the files.
  Without multiproc_dir these metrics are off (nothing would read a lone process's values).

Importing this module only declares `[prometheus]`; prometheus_client is imported when it
is used, after PROMETHEUS_MULTIPROC_DIR is set (prometheus_client reads it once, at import).
"""

from __future__ import annotations

import glob
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import events
from .config import Config, get_config, section, setting
from .config import values as v
from .db import engine_for
from .errors import ConfigError
from .priority import bucket_name
from .web.settings import parse_bind, split_address
from .web.snapshot import SnapshotSource

log = logging.getLogger("delayed.prometheus")

DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1200.0)


def _buckets(value: Any) -> list[float]:
    """Histogram bucket upper bounds: increasing positive numbers (+Inf is added).

    From the environment: comma-separated ("0.1,0.5,1,5").
    """
    if isinstance(value, str):
        try:
            value = [float(part) for part in value.split(",") if part.strip()]
        except ValueError:
            raise ValueError(f"expected comma-separated numbers of seconds, got {value!r}") from None
    if not isinstance(value, list | tuple) or not value:
        raise ValueError(f"expected a list of increasing numbers of seconds, got {value!r}")
    out: list[float] = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int | float) or item <= 0:
            raise ValueError(f"bucket bounds are positive numbers of seconds, got {item!r}")
        if out and item <= out[-1]:
            raise ValueError(f"bucket bounds must increase, got {item!r} after {out[-1]!r}")
        out.append(float(item))
    return out


v._kind(_buckets, "list of increasing seconds")


@section(
    "prometheus",
    "Prometheus metrics (pip install 'pydelayed[prometheus]'): the table's gauges at scrape time "
    "and the workers' job counters; docs/observability.md has the names.",
)
@dataclass(frozen=True)
class PrometheusSettings:
    """`[prometheus]`."""

    bind: str | None = setting(
        None,
        v.optional(parse_bind),
        "Where `delayed monitor` (and the supervisor's monitor child) serve /metrics; unset: no exporter.",
        flags=("--prometheus",),
        commands=("monitor",),
        example="127.0.0.1:9187",
    )
    cache: float = setting(
        10.0,
        v.duration(),
        "Seconds one run of the table queries serves scrapes for (0: every scrape queries).",
    )
    multiproc_dir: str | None = setting(
        None,
        v.optional(v.string),
        "Directory where worker processes write job counters and timings (prometheus_client "
        "multiprocess mode); the exporter and the dashboard read it. Unset: no worker metrics.",
        example="/run/delayed/metrics",
    )
    buckets: list[float] = setting(
        list(DEFAULT_BUCKETS), _buckets, "Upper bounds (seconds) of delayed_job_duration_seconds."
    )


def prometheus_settings(config: Config | None = None) -> PrometheusSettings:
    return (config or get_config()).section("prometheus")  # type: ignore[no-any-return]


def _require_client() -> Any:
    try:
        import prometheus_client
    except ImportError as exc:
        raise ImportError(
            f"Prometheus metrics need the prometheus extra: pip install 'pydelayed[prometheus]' ({exc})"
        ) from exc
    return prometheus_client


# ----------------------------------------------------------------------------- gauges
def _label(queue: str | None) -> str:
    return "" if queue is None else queue


class TableCollector:
    """A prometheus_client collector: the table's gauges from a SnapshotSource.

    Groups seen once keep reporting (as 0) after their last row is gone, so a queue that
    drains shows 0 instead of a series that stops.
    """

    def __init__(self, source: Any) -> None:
        self.source = source
        self._seen: dict[tuple[str, str], None] = {}
        self._lock = threading.Lock()

    def describe(self) -> list[Any]:
        return []  # collected at scrape time; do not query when registering

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        up = GaugeMetricFamily("delayed_up", "1 when the last query of the jobs table succeeded, else 0.")
        try:
            snapshot = self.source.get()
        except Exception as exc:
            log.error("Prometheus scrape: the jobs table query failed: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 0 if self.source.last_error else 1)
        yield up
        yield from self._families(snapshot)

    def _families(self, snapshot: Any) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        labels = ["queue", "priority"]
        jobs = GaugeMetricFamily(
            "delayed_jobs",
            "Jobs in the table by state: ready (due, not locked), scheduled (run_at later), "
            "running (locked within the lock timeout), failed (failed_at set).",
            labels=[*labels, "state"],
        )
        erroring = GaugeMetricFamily(
            "delayed_jobs_erroring", "Live jobs that have failed at least once (any state).", labels=labels
        )
        age = GaugeMetricFamily(
            "delayed_oldest_job_age_seconds",
            "Seconds the oldest ready job has waited past its run_at (the queue's lag).",
            labels=labels,
        )
        lock_age = GaugeMetricFamily(
            "delayed_oldest_lock_age_seconds",
            "Seconds since the oldest running job was picked up.",
            labels=labels,
        )
        ratio = GaugeMetricFamily(
            "delayed_alert_age_ratio",
            "delayed_oldest_job_age_seconds divided by the priority's alert age (1 = at the threshold).",
            labels=labels,
        )
        groups = {(_label(g.queue), g.priority): g for g in snapshot.groups}
        with self._lock:
            for key in groups:
                self._seen.setdefault(key, None)
            keys = list(self._seen)
        for key in keys:
            group = groups.get(key)
            for state in ("ready", "scheduled", "running", "failed"):
                jobs.add_metric([*key, state], getattr(group, state) if group else 0)
            erroring.add_metric(list(key), group.erroring if group else 0)
            age.add_metric(list(key), group.oldest_age if group else 0.0)
            lock_age.add_metric(list(key), group.oldest_lock_age if group else 0.0)
            threshold = snapshot.alerts.get(key[1])
            if threshold is not None and threshold.age:
                ratio.add_metric(list(key), (group.oldest_age if group else 0.0) / threshold.age)
        yield from (jobs, erroring, age, lock_age, ratio)
        yield from self._thresholds(snapshot)
        query = GaugeMetricFamily(
            "delayed_table_query_duration_seconds", "Seconds the last run of the table queries took."
        )
        query.add_metric([], snapshot.duration)
        staleness = GaugeMetricFamily(
            "delayed_table_query_age_seconds", "How old the table figures in this scrape are (the cache)."
        )
        staleness.add_metric([], snapshot.age())
        yield from (query, staleness)

    @staticmethod
    def _thresholds(snapshot: Any) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        alert_age = GaugeMetricFamily(
            "delayed_priority_alert_age_seconds", "A priority's alert age threshold.", labels=["priority"]
        )
        alert_run = GaugeMetricFamily(
            "delayed_priority_alert_run_time_seconds",
            "A priority's alert run time threshold.",
            labels=["priority"],
        )
        for name, thresholds in snapshot.alerts.items():
            if thresholds.age:
                alert_age.add_metric([name], thresholds.age)
            if thresholds.run_time:
                alert_run.add_metric([name], thresholds.run_time)
        yield from (alert_age, alert_run)


# ----------------------------------------------------------------------------- worker metrics
class WorkerMetrics:
    """Counters and a histogram of job runs, fed by delayed.events; `subscribe()` to start.

    performed: runs that returned; errored: runs that raised (every attempt); failed: jobs
    given up on (last attempt, or an unknown job name). Labels: queue and priority name
    (negative priorities count as the lowest name, as in the monitor and StatsD).
    """

    def __init__(self, priority_names: dict[str, int], buckets: Iterable[float] = DEFAULT_BUCKETS) -> None:
        client = _require_client()
        labels = ["queue", "priority"]
        self.priority_names = dict(priority_names)
        self.duration = client.Histogram(
            "delayed_job_duration_seconds",
            "Seconds a job's perform took, by outcome (success or error).",
            [*labels, "outcome"],
            buckets=list(buckets),
            registry=None,
        )
        self.performed = client.Counter(
            "delayed_jobs_performed", "Job runs that finished without an error.", labels, registry=None
        )
        self.errored = client.Counter(
            "delayed_jobs_errored", "Job runs that raised (each failed attempt).", labels, registry=None
        )
        self.failed = client.Counter(
            "delayed_jobs_failed",
            "Jobs given up on (attempts exhausted, or not runnable).",
            labels,
            registry=None,
        )
        self._unsubscribe: list[Callable[[], None]] = []

    def _labels(self, payload: dict[str, Any]) -> tuple[str, str]:
        priority = payload.get("priority")
        name = (
            bucket_name(priority, self.priority_names) if isinstance(priority, int) else str(priority or "")
        )
        return _label(payload.get("queue")), name

    def on_run(self, event: events.Event) -> None:
        queue, priority = self._labels(event.payload)
        outcome = "error" if event.error is not None else "success"
        self.duration.labels(queue, priority, outcome).observe(event.duration)
        if event.error is None:
            self.performed.labels(queue, priority).inc()

    def on_error(self, event: events.Event) -> None:
        self.errored.labels(*self._labels(event.payload)).inc()

    def on_failure(self, event: events.Event) -> None:
        self.failed.labels(*self._labels(event.payload)).inc()

    def subscribe(self) -> None:
        self._unsubscribe = [
            events.subscribe("delayed.job.run", self.on_run),
            events.subscribe("delayed.job.error", self.on_error),
            events.subscribe("delayed.job.failure", self.on_failure),
        ]

    def unsubscribe(self) -> None:
        for undo in self._unsubscribe:
            undo()
        self._unsubscribe = []


_installed: WorkerMetrics | None = None
_install_lock = threading.Lock()


def install(config: Config | None = None) -> WorkerMetrics | None:
    """Count this process's job runs into `[prometheus] multiproc_dir`; None when it is unset.

    Called by `delayed work` and in each supervisor child (after the fork). Idempotent.
    prometheus_client chooses multiprocess mode once, when it is first imported, from
    PROMETHEUS_MULTIPROC_DIR: this sets the variable first. If something imported
    prometheus_client earlier without it, the metrics would stay in this process's memory,
    where no exporter can read them, so they are refused with an error naming the fix.
    """
    global _installed
    config = config if config is not None else get_config()
    settings = prometheus_settings(config)
    if not settings.multiproc_dir:
        return None
    with _install_lock:
        if _installed is not None:
            return _installed
        directory = _prepare_dir(settings.multiproc_dir)
        current = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if current and os.path.realpath(current) != os.path.realpath(directory):
            raise ConfigError(
                f"[prometheus] multiproc_dir is {directory!r} but PROMETHEUS_MULTIPROC_DIR is "
                f"{current!r}; use one directory (unset the variable or make them equal)"
            )
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
        try:
            _require_client()
        except ImportError:
            _restore_env(current)
            raise
        from prometheus_client import values

        if not getattr(values.ValueClass, "_multiprocess", False):
            _restore_env(current)
            log.error(
                "worker metrics are off: prometheus_client was imported before "
                "PROMETHEUS_MULTIPROC_DIR was set; set PROMETHEUS_MULTIPROC_DIR=%s in the "
                "environment of this process",
                directory,
            )
            return None
        metrics = WorkerMetrics(config.priority_names, settings.buckets)
        metrics.subscribe()
        _installed = metrics
        log.info("Prometheus worker metrics in %s", directory)
        return metrics


def _restore_env(previous: str | None) -> None:
    if previous is None:
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    else:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = previous


def _prepare_dir(path: str) -> str:
    directory = os.path.abspath(os.path.expanduser(path))
    try:
        Path(directory).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"[prometheus] multiproc_dir {directory!r}: cannot create it: {exc.strerror}"
        ) from None
    if not os.access(directory, os.W_OK):
        raise ConfigError(f"[prometheus] multiproc_dir {directory!r} is not writable by this user")
    return directory


def clear_multiproc_dir(config: Config | None = None) -> int:
    """Delete the metric files a previous run left (prometheus_client's advice at start-up).

    For the supervisor master before it forks its children: counters then start from 0,
    which Prometheus's rate() reads as a restart. Returns the number of files removed.
    Nothing is imported from prometheus_client here, so the master stays clean for forking.
    """
    settings = prometheus_settings(config)
    if not settings.multiproc_dir or not os.path.isdir(settings.multiproc_dir):
        return 0
    removed = 0
    for path in glob.glob(os.path.join(settings.multiproc_dir, "*.db")):
        try:
            os.remove(path)
            removed += 1
        except FileNotFoundError:
            pass
    return removed


def worker_totals(directory: str) -> dict[str, float] | None:
    """Sums of the workers' counters in `directory` (for the dashboard's throughput chart)."""
    if not os.path.isdir(directory):
        return None
    _require_client()
    from prometheus_client.multiprocess import MultiProcessCollector

    files = glob.glob(os.path.join(directory, "*.db"))
    totals = {"performed": 0.0, "errored": 0.0, "failed": 0.0}
    for metric in MultiProcessCollector.merge(files, accumulate=False):
        for sample in metric.samples:
            for key in totals:
                if sample.name == f"delayed_jobs_{key}_total":
                    totals[key] += sample.value
    return totals


# ----------------------------------------------------------------------------- registries
def build_registry(source: Any, config: Config) -> Any:
    """A registry with the table's gauges and, when configured, the workers' metric files."""
    _require_client()
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(TableCollector(source))
    directory = prometheus_settings(config).multiproc_dir
    if directory:
        registry.register(_MultiProcessFiles(directory))
    return registry


class _MultiProcessFiles:
    """prometheus_client's MultiProcessCollector, tolerating a directory not made yet."""

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterable[Any]:
        if not os.path.isdir(self.directory):
            return []
        from prometheus_client.multiprocess import MultiProcessCollector

        files = glob.glob(os.path.join(self.directory, "*.db"))
        return MultiProcessCollector.merge(files, accumulate=True)


def make_source(config: Config, engine: Any = None) -> Any:
    """A SnapshotSource on `engine` (default: this process's engine for the config's database)."""
    chosen = engine if engine is not None else (lambda: engine_for(config.database_url, config.pooler))
    return SnapshotSource(config, chosen, prometheus_settings(config).cache)


def start_exporter(config: Config, address: str | None = None) -> tuple[Any, threading.Thread]:
    """Serve /metrics on `address` (default `[prometheus] bind`) in a daemon thread.

    Returns (server, thread); `server.shutdown()` stops it. ConfigError for a bad or busy
    address.
    """
    client = _require_client()
    where = address or prometheus_settings(config).bind
    if not where:
        raise ConfigError(
            "no address for the Prometheus exporter: give --prometheus HOST:PORT or [prometheus] bind"
        )
    try:
        host, port = split_address(where)
    except ValueError as exc:
        raise ConfigError(f"--prometheus / [prometheus] bind: {exc}") from None
    registry = build_registry(make_source(config), config)
    try:
        server, thread = client.start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise ConfigError(f"cannot serve Prometheus metrics on {where}: {exc.strerror or exc}") from None
    log.info("Prometheus metrics on http://%s/metrics", where)
    return server, thread
