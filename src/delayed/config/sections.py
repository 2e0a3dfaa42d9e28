"""The core sections: [delayed], [supervisor], [[pool]], [statsd], [monitor], [tracing], [[cron]],
[scheduler].

Each is a frozen dataclass: code reads `config.max_claims`, `config.supervisor.workers`,
`config.pools[0].queues`, typed. Optional features declare their own sections the same way
in their own modules (delayed.config.table.section).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import values as v
from .table import section, setting

ALL_COMMANDS = ("migrate", "work", "monitor", "jobs", "web", "cron", "workers")


@section(
    "delayed",
    "The jobs table, the workers and the job defaults. Read by `delayed work`, `delayed migrate`, "
    "`delayed jobs`, `delayed monitor` and `delayed supervise` (`delayed-supervisor`).",
)
@dataclass(frozen=True)
class DelayedSettings:
    """`[delayed]`: what every command and worker reads."""

    database_url: str = setting(
        "sqlite:///delayed.sqlite3",
        v.string,
        "SQLAlchemy URL of the database holding the jobs table. postgresql:// uses psycopg 3, "
        "mysql:// uses PyMySQL. Prefer the environment or this file to the flag: a flag's password "
        "is visible to `ps`.",
        env=("DELAYED_DATABASE_URL",),
        flags=("--database-url",),
        commands=ALL_COMMANDS,
        example="postgresql://delayed@localhost/myapp",
    )
    table_name: str = setting(
        "delayed_jobs",
        v.table_name,
        "Name of the jobs table: letters, digits and underscores, optionally schema-qualified "
        "(`myschema.delayed_jobs`). The other tables' names derive from it (delayed_cron_runs, "
        "delayed_schema_migrations, ...).",
    )
    require: list[str] = setting(
        [],
        v.string_list,
        "Modules imported before working, so their job classes are registered, e.g. "
        '["myapp.jobs", "myapp.mailers"]. The supervisor imports them once, in the master. '
        "A flag adds to the file's list.",
        flags=("--require",),
        commands=("work", "cron"),
    )
    max_claims: int = setting(
        5,
        v.integer(1),
        "Jobs one worker process runs at once (its thread-pool size) and claims per pickup. "
        "Under the supervisor, [supervisor] max_claims and [[pool]] max_claims take precedence.",
        env=("MAX_CLAIMS",),
        flags=("--max-claims",),
        commands=("work",),
    )
    max_async_claims: int = setting(
        100,
        v.integer(1),
        "Async jobs (`async def perform`) one worker process runs at once on its event loop (one "
        "loop thread per process), beside and apart from the max_claims job threads.",
        env=("MAX_ASYNC_CLAIMS",),
        flags=("--max-async-claims",),
        commands=("work",),
    )
    keep_finished: float = setting(
        0.0,
        v.duration(),
        "How long a successful job's row is kept, with finished_at and its JSON return value "
        "(`delayed jobs list --finished`, Django's get_result); 0 deletes it at once (the "
        "default, as the Ruby gem). A job class's `keep_finished` takes precedence. Workers "
        "prune expired rows in batches.",
        env=("KEEP_FINISHED",),
        flags=("--keep-finished",),
        commands=("work",),
    )
    read_ahead: int = setting(
        5,
        v.integer(1),
        "MySQL/MariaDB servers without SKIP LOCKED only: candidate rows read per pickup.",
        env=("READ_AHEAD",),
        flags=("--read-ahead",),
        commands=("work",),
    )
    sleep_delay: float = setting(
        5.0,
        v.duration(),
        "Seconds an idle worker waits before looking for jobs again (PostgreSQL also wakes at once "
        "on NOTIFY when listen_notify is true).",
        env=("SLEEP_DELAY",),
        flags=("--sleep-delay",),
        commands=("work",),
    )
    connect_timeout: float = setting(
        10.0,
        v.duration(positive=True),
        "Seconds a worker waits for a new database connection (TCP connect and the server's "
        "greeting) before the attempt counts as failed and is retried with back-off. Workers' own "
        "connections only, not the engine your jobs get from delayed.get_engine(); a URL that sets "
        "connect_timeout itself wins.",
    )
    network_timeout: float = setting(
        30.0,
        v.duration(positive=True),
        "Seconds a worker's own database connection may go without an answer before it counts as "
        "lost, so that a host that stops answering never blocks the worker (or its SIGTERM) for "
        "minutes. MySQL/MariaDB: read and write timeout of every statement. PostgreSQL: TCP "
        "keepalives and tcp_user_timeout (libpq has no read timeout). Not applied to "
        "delayed.get_engine().",
    )
    max_attempts: int = setting(
        25,
        v.integer(1),
        "Runs a job gets before it is marked failed (a job class may set its own).",
        env=("MAX_ATTEMPTS",),
    )
    max_run_time: float = setting(
        1200.0,
        v.duration(positive=True),
        "Longest a job may run (a job class may set a lower one). Under the supervisor a job past "
        "it has its process killed and counts a failed attempt. The lock timeout is this plus 30 s; "
        "0 is refused.",
        env=("MAX_RUN_TIME",),
        example="20m",
    )
    queues: list[str] = setting(
        [],
        v.string_list,
        "Queues to work; empty means every queue (and jobs with none). Pools may override.",
        env=("QUEUES", "QUEUE"),
        flags=("--queue", "--queues"),
        commands=("work",),
    )
    default_queue_name: str = setting("default", v.string, "Queue of a job that names none.")
    default_priority: int | str = setting(
        10, v.priority, "Priority of a job that names none: a number or a name from priority_names."
    )
    min_priority: int | str | None = setting(
        None,
        v.optional(v.priority),
        "Lowest priority this worker picks up (inclusive; a number or a name); unset means no "
        "bound. Pools may override. A min_priority above max_priority is refused (exit 2).",
        env=("MIN_PRIORITY",),
        flags=("--min-priority",),
        commands=("work",),
        example=0,
    )
    max_priority: int | str | None = setting(
        None,
        v.optional(v.priority),
        "Highest priority this worker picks up (inclusive; a number or a name); unset means no "
        "bound. Pools may override.",
        env=("MAX_PRIORITY",),
        flags=("--max-priority",),
        commands=("work",),
        example="reporting",
    )
    destroy_failed_jobs: bool = setting(
        False,
        v.boolean,
        "Delete jobs that exhaust their attempts instead of keeping them with failed_at set.",
    )
    priority_names: dict[str, int] = setting(
        {"interactive": 0, "user_visible": 10, "eventual": 20, "reporting": 30},
        v.priority_names,
        "Named priority ranges: name = lower bound (each range runs to the next bound; one must "
        "start at 0). A lower number is picked up first.",
    )
    priority_alerts: dict[str, dict[str, float | int | None]] | None = setting(
        None,
        v.optional(v.priority_alerts),
        "Alert thresholds per priority name (the monitor and Priority objects use them): "
        'name = { age = "1m", run_time = "30s", attempts = 3 }; false removes a threshold. The '
        "default names start from the Ruby gem's thresholds, custom names from none.",
        example={"interactive": {"age": "2m"}, "reporting": {"attempts": False}},
    )
    durable_claims: bool = setting(
        False,
        v.boolean,
        "PostgreSQL: claim with synchronous_commit = on. Off (the default), a claim does not wait "
        "for its WAL flush (a third of a job's start latency on an idle worker); a database server "
        "crash can then undo the last fraction of a second of claims, and since the worker that "
        "made them keeps running those jobs while their rows are claimable again, such a job may "
        "run concurrently with itself after a database crash (never lost: enqueues and outcomes "
        "always commit durably). Turn this on to rule that out, at one WAL flush per claim.",
    )
    listen_notify: bool = setting(
        True,
        v.boolean,
        "On PostgreSQL, wake idle workers with LISTEN/NOTIFY instead of waiting sleep_delay.",
    )
    heartbeat_interval: float = setting(
        10.0,
        v.duration(),
        "Seconds between a worker's heartbeats in the worker registry (the delayed_workers table: "
        "one small UPDATE per interval per worker process, timed by the database's clock). 0 turns "
        "the registry off: no row, no rescue of other hosts' jobs, no fencing.",
        env=("DELAYED_HEARTBEAT_INTERVAL",),
    )
    worker_timeout: float = setting(
        60.0,
        v.duration(positive=True),
        "A worker whose last heartbeat is older than this is dead: any live worker releases the jobs "
        "it held (attempts + 1, as for a crashed child) and removes its row. A worker that cannot "
        "write its heartbeat for half of this stops claiming. Must exceed twice heartbeat_interval.",
        env=("DELAYED_WORKER_TIMEOUT",),
    )
    pooler: str = setting(
        "none",
        v.choice("none", "transaction"),
        'PostgreSQL behind PgBouncer in transaction pooling mode: "transaction" turns off what '
        "breaks there (LISTEN/NOTIFY: idle workers poll every sleep_delay; server-side prepared "
        "statements; session SETs: claims run in a transaction with SET LOCAL). Session pooling "
        'or a direct connection: "none".',
        env=("DELAYED_POOLER",),
    )
    log_level: str = setting(
        "INFO", v.log_level, "Log level of the commands (DEBUG, INFO, WARNING, ERROR, CRITICAL)."
    )


@section(
    "supervisor",
    "`delayed supervise -c FILE` (alias `delayed-supervisor`): a master process that forks worker "
    "children, replaces them when they die, kills a child whose job passes max_run_time, and "
    "drains gracefully. Signals: TERM/INT drain and exit 0 (a second one stops at once), QUIT "
    "stops at once (running jobs are released and run again), HUP reloads this file and replaces "
    "every child gracefully (code is not reloaded: restart for a deploy), TTIN/TTOU add/remove one "
    "child of the first pool (until the next HUP), USR1 reopens log_file.",
)
@dataclass(frozen=True)
class SupervisorSettings:
    """`[supervisor]`: the master's settings."""

    workers: int = setting(
        2,
        v.integer(0),
        "Child processes of the default pool; used when no [[pool]] is given, and as the default of "
        "a [[pool]] without `workers`.",
    )
    max_claims: int | None = setting(
        None,
        v.optional(v.integer(1)),
        "Threads per child (jobs each child runs at once); unset means [delayed] max_claims.",
        example=5,
    )
    graceful_timeout: float = setting(
        30.0,
        v.duration(),
        "Seconds children get to finish their running jobs after TERM/INT/HUP (and after being "
        "recycled for memory); then they are killed and their jobs released to run again. Keep "
        "systemd's TimeoutStopSec above this.",
    )
    max_memory_mb: int | None = setting(
        None,
        v.optional(v.integer(1)),
        "A child whose resident memory passes this many MiB is drained and replaced; unset means no limit.",
        example=1024,
    )
    pidfile: str | None = setting(
        None,
        v.optional(v.string),
        "File the master writes its pid to; removed at exit. Unset means none.",
        example="/run/delayed/supervisor.pid",
    )
    log_level: str | None = setting(
        None,
        v.optional(v.log_level),
        "Log level of the master and children; unset means [delayed] log_level.",
        example="INFO",
    )
    log_file: str | None = setting(
        None,
        v.optional(v.string),
        "Append logs to this file instead of stderr (systemd's journal); USR1 reopens it after "
        "rotation. Unset means stderr.",
        example="/var/log/delayed/supervisor.log",
    )
    heartbeat_timeout: float = setting(
        30.0,
        v.duration(positive=True),
        "Children report a heartbeat every second; one silent for this long is killed and replaced, "
        "and the jobs it was running count a failed attempt (rows it had claimed but not started "
        "are released).",
    )
    max_run_time_grace: float = setting(
        2.0,
        v.duration(),
        "When a job passes its max_run_time its child stops claiming at once; after this many more "
        "seconds, if the job still runs, the child is killed: that job counts a failed attempt "
        '("max_run_time of N s exceeded"), the child\'s other jobs are released. Must be below '
        "20 s: the job's lock expires 30 s after its max_run_time, and the kill and the reclaim "
        "need the last 10 s (a longer grace could let a second copy start beside the first).",
    )
    on_worker_boot: str | None = setting(
        None,
        v.optional(v.import_path),
        '"module:function" called with no arguments in each child right after the fork, before it '
        "works: set up per-process clients here (tracer providers, HTTP pools, ...).",
        example="myapp.boot:worker_boot",
    )
    monitor: bool = setting(
        False,
        v.boolean,
        "Also run the monitor (periodic gauges of the jobs table, see [monitor]) as one extra child.",
    )


_POOL_EXAMPLES: tuple[tuple[str, dict[str, Any]], ...] = (
    (
        "A pool that only runs interactive jobs (priorities 0-9), so they never wait behind long "
        "reports. No min_priority here, so negative priorities (more urgent than interactive) run "
        "in this pool too.",
        {"name": "interactive", "queues": [], "max_priority": 9, "workers": 1, "max_claims": 5},
    ),
    ("Everything else.", {"name": "default", "min_priority": 10, "workers": 2}),
)


@section(
    "pool",
    "Optional: groups of children with their own queues, priorities and sizes. Without any "
    '[[pool]], there is one pool ("default") made from [supervisor] and [delayed]. Each key left '
    "out falls back to [supervisor] (workers, max_claims) or [delayed] (queues, min_priority, "
    "max_priority).",
    array=True,
    examples=_POOL_EXAMPLES,
)
@dataclass(frozen=True)
class PoolSettings:
    """One `[[pool]]` table (None: fall back as the section's doc says)."""

    name: str | None = setting(
        None, v.optional(v.string), 'Name shown in process titles, logs and events (default "pool-N").'
    )
    queues: list[str] | None = setting(
        None, v.optional(v.string_list), "Queues of this pool; [] means every queue."
    )
    min_priority: int | str | None = setting(
        None,
        v.optional(v.priority),
        "Lowest priority picked up (inclusive; a number or a name); not above max_priority.",
        example=0,
    )
    max_priority: int | str | None = setting(
        None, v.optional(v.priority), "Highest priority picked up (inclusive; a number or a name)."
    )
    workers: int | None = setting(None, v.optional(v.integer(0)), "Child processes of this pool.")
    max_claims: int | None = setting(None, v.optional(v.integer(1)), "Threads per child.")


@section(
    "statsd",
    "Timings, counters and the monitor's gauges over UDP (docs/observability.md has the metric "
    "names). Sending never blocks or breaks a job.",
)
@dataclass(frozen=True)
class StatsdSettings:
    """`[statsd]`."""

    host: str | None = setting(
        None,
        v.optional(v.string),
        "StatsD host; unset (the default) means StatsD is off.",
        example="127.0.0.1",
    )
    port: int = setting(8125, v.integer(1), "UDP port.")
    prefix: str = setting("delayed", v.string, 'Prefix of every metric name ("" for none).')
    sample_rate: float = setting(
        1.0, v.sample_rate, "Fraction of per-job timings and counters sent (gauges are always sent)."
    )


@section(
    "monitor",
    "`delayed monitor` (or [supervisor] monitor = true): count, ages and alert_age_percent per "
    "queue and priority name.",
)
@dataclass(frozen=True)
class MonitorSettings:
    """`[monitor]`."""

    interval: float = setting(
        60.0,
        v.duration(positive=True),
        "Seconds between two passes.",
        flags=("--interval",),
        commands=("monitor",),
    )
    queues: list[str] = setting(
        [],
        v.string_list,
        "Queues to report; [] means the [delayed] queues (every queue when those are empty).",
        flags=("--queue", "--queues"),
        commands=("monitor",),
    )


@section(
    "tracing",
    'OpenTelemetry spans for enqueue ("<queue> publish") and execution ("<queue> process"); needs '
    "`pip install pydelayed[otel]` and a tracer provider (set it up in on_worker_boot under the "
    "supervisor).",
)
@dataclass(frozen=True)
class TracingSettings:
    """`[tracing]`."""

    enabled: bool = setting(False, v.boolean, "Turn tracing on in `delayed work` and in supervisor children.")
    propagation_style: str = setting(
        "link",
        v.choice("link", "child", "none"),
        '"link": the process span starts a new trace linked to the publish span; "child": it '
        'continues the enqueuer\'s trace; "none": no relation.',
    )
    span_naming: str = setting(
        "queue",
        v.choice("queue", "job_class"),
        '"queue": spans are named after the queue; "job_class": after the job\'s name.',
    )


_CRON_EXAMPLES: tuple[tuple[str, dict[str, Any]], ...] = (
    (
        "A nightly job at 03:00 Zurich time (daylight saving handled: a tick in the skipped hour "
        "runs at the first minute after it, a tick in the repeated hour runs once).",
        {
            "key": "nightly-report",
            "schedule": "0 3 * * *",
            "job": "reports.NightlyReport",
            "args": ["full"],
            "queue": "reports",
            "priority": "reporting",
            "timezone": "Europe/Zurich",
        },
    ),
    (
        "An interval instead of a schedule: every 30 s, at multiples of 30 s since the Unix epoch.",
        {"key": "heartbeat", "every": "30s", "job": "ops.Heartbeat"},
    ),
)


@section(
    "cron",
    "Recurring jobs: each tick of an entry's schedule enqueues its job once, whatever the number "
    "of supervisors and hosts running the scheduler (a unique (key, tick) row is written in the "
    "job's transaction). The job's run_at is the tick (`self.record.run_at`). Entries can also be "
    'declared in code, in a module listed in `require`: `delayed.cron("key", "0 3 * * *", '
    "JobClass, args=[...])`. A schedule that does not parse, an unknown time zone or a job name "
    "that is not registered stops the program (exit 2) naming the entry.",
    array=True,
    examples=_CRON_EXAMPLES,
    examples_commented=True,
)
@dataclass(frozen=True)
class CronSettings:
    """One `[[cron]]` table; checked as a whole by delayed.recurring.entries."""

    key: str = setting(
        "",
        v.string,
        "Unique, stable name of the entry (at most 255 characters); ticks are recorded under it.",
    )
    schedule: str | None = setting(
        None,
        v.optional(v.string),
        "Cron expression: 5 fields (minute hour day-of-month month day-of-week), or 6 with seconds "
        "first. Give `schedule` or `every`, not both.",
        example="30 2 * * 1-5",
    )
    every: float | None = setting(
        None,
        v.optional(v.duration(positive=True)),
        'An interval instead of a schedule ("30s", "5m", "1h"): ticks at multiples of it since the '
        "Unix epoch (UTC), so every host computes the same ticks.",
        example="30s",
    )
    job: str = setting("", v.string, "The registered name of the job class (module.Class, or its name=).")
    args: list[Any] = setting([], v.json_array, "Positional arguments of every enqueued job (JSON values).")
    kwargs: dict[str, Any] = setting(
        {},
        v.json_table,
        "Keyword arguments of every enqueued job (JSON values).",
        example={"format": "pdf"},
    )
    queue: str | None = setting(
        None, v.optional(v.string), "Queue of the jobs; unset means the job class's, then default_queue_name."
    )
    priority: int | str | None = setting(
        None,
        v.optional(v.priority),
        "Priority of the jobs (a number or a name); unset means the job class's, then default_priority.",
    )
    timezone: str = setting(
        "UTC", v.string, "IANA time zone the schedule is read in, e.g. Europe/Zurich (not used by `every`)."
    )


@section(
    "scheduler",
    "The cron scheduler. Every `delayed supervise` runs it as one extra child when there is at least "
    "one cron entry; running it on several hosts is safe (each tick is enqueued once, no leader). "
    "`delayed work` runs it in a thread only when `in_work` is true.",
)
@dataclass(frozen=True)
class SchedulerSettings:
    """`[scheduler]`."""

    enabled: bool = setting(
        True, v.boolean, "Run the scheduler in `delayed supervise` (one extra child) when cron entries exist."
    )
    in_work: bool = setting(
        False, v.boolean, "Also run the scheduler in `delayed work`, as a thread beside the worker."
    )
    catch_up: float = setting(
        3600.0,
        v.duration(),
        "After downtime, the most recent missed tick of each entry is enqueued if it is at most this "
        "old; older missed ticks are skipped (and logged once). 0 means no catch-up: only ticks "
        "handled within 5 s of their time are enqueued.",
    )
    wake_interval: float = setting(
        60.0,
        v.duration(positive=True),
        "Longest the scheduler sleeps between two looks at the clock; it also wakes at every entry's "
        "next tick.",
    )
    keep_runs: float = setting(
        7 * 86400.0,
        v.duration(positive=True),
        "How long the record of each enqueued tick (delayed_cron_runs) is kept; the newest of each "
        "entry is always kept. Older rows are deleted in batches of 1,000 every prune_interval.",
        example="7d",
    )
    prune_interval: float = setting(
        3600.0, v.duration(positive=True), "Seconds between two prunes of old tick records (per scheduler)."
    )
