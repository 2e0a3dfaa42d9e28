"""Every setting declared once: name, kind, default, doc and environment names.

The same table serves `delayed.configure(...)`, the TOML file (`-c delayed.toml`), the
environment and the CLI flags, so a setting cannot mean one thing in a file and another on
the command line. Precedence, lowest first: defaults, file, environment, explicit
arguments (`configure(...)` or CLI flags). Errors name the source and the key.

Other modules declare their own sections (`[supervisor]`, `[statsd]`, ...) with
`declare_section`, so the file format grows with the features without a second parser.
"""

from __future__ import annotations

import logging
import os
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .timeutil import to_seconds

Parser = Callable[[Any], Any]


# ----------------------------------------------------------------------------- value kinds
def _int(minimum: int | None = None) -> Parser:
    def parse(value: Any) -> int:
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer, got {value!r}")
        if minimum is not None and value < minimum:
            raise ValueError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def _optional(inner: Parser) -> Parser:
    def parse(value: Any) -> Any:
        if value is None or (isinstance(value, str) and value.strip() == ""):
            return None
        return inner(value)

    return parse


def _duration(positive: bool = False) -> Parser:
    def parse(value: Any) -> float:
        seconds = to_seconds(value)
        if positive and seconds <= 0:
            raise ValueError(f"must be more than 0 seconds, got {value!r}")
        return seconds

    return parse


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"1", "true", "yes", "on"}:
        return True
    if isinstance(value, str) and value.strip().lower() in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    return value


def _log_level(value: Any) -> str:
    """A logging level name such as INFO; anything else is refused rather than ignored."""
    if not isinstance(value, str) or not isinstance(logging.getLevelName(value.strip().upper()), int):
        raise ValueError(f"expected a log level (DEBUG, INFO, WARNING, ERROR, CRITICAL), got {value!r}")
    return value.strip().upper()


def _str_list(value: Any) -> list[str]:
    """A list of strings; from the environment or a flag, a comma-separated string."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
        return list(value)
    raise ValueError(f"expected a list of strings, got {value!r}")


def _int_or_name(value: Any) -> int | str:
    """A priority: a number, or a priority name resolved when it is used."""
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"expected a priority number or name, got {value!r}")
    return value


def _priority_names(value: Any) -> dict[str, int]:
    if not isinstance(value, Mapping) or not value:
        raise ValueError(f"expected a table of name = lower bound, got {value!r}")
    names = {}
    for key, bound in value.items():
        names[str(key)] = _int()(bound)
    if 0 not in names.values():
        raise ValueError("must include a name whose lower bound is 0")
    return dict(sorted(names.items(), key=lambda item: item[1]))


_ALERT_KEYS = ("age", "run_time", "attempts")


def parse_alerts(value: Any) -> dict[str, dict[str, float | int | None]]:
    """Parse `priority_alerts`: `name = {age = "1m", run_time = "30s", attempts = 3}`.

    Only the keys given change; `false` removes a threshold. Names are checked against
    `priority_names` when the thresholds are used (`alerts_for`), since the two settings
    are parsed independently.
    """
    if not isinstance(value, Mapping):
        raise ValueError(
            f'expected a table of name = {{age = "1m", run_time = "30s", attempts = 3}}, got {value!r}'
        )
    parsed: dict[str, dict[str, float | int | None]] = {}
    for name, body in value.items():
        if not isinstance(body, Mapping):
            raise ValueError(f"{name}: expected a table with age, run_time and/or attempts, got {body!r}")
        entry: dict[str, float | int | None] = {}
        for key, raw in body.items():
            if key not in _ALERT_KEYS:
                raise ValueError(f"{name}: unknown key {key!r}; known keys: age, run_time, attempts")
            entry[key] = _threshold(name, key, raw)
        parsed[str(name)] = entry
    return parsed


def _threshold(name: str, key: str, raw: Any) -> float | int | None:
    if raw is False:
        return None
    if key == "attempts":
        if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
            raise ValueError(f"{name}.attempts: expected a whole number of attempts (or false), got {raw!r}")
        return raw
    try:
        return to_seconds(raw)
    except ValueError as exc:
        raise ValueError(f"{name}.{key}: {exc} (or false for none)") from None


INT = _int
OPTIONAL = _optional
DURATION = _duration
BOOL = _bool
STR = _str
STR_LIST = _str_list
PRIORITY = _int_or_name


# ----------------------------------------------------------------------------- declarations
@dataclass(frozen=True)
class Setting:
    """One setting: how to parse it, its default, its documentation and its env names."""

    name: str
    parse: Parser
    default: Any
    doc: str
    env: tuple[str, ...] = ()


@dataclass
class Section:
    """A TOML table (`[name]`) or, with `array=True`, an array of tables (`[[name]]`)."""

    name: str
    settings: dict[str, Setting]
    array: bool = False


SECTIONS: dict[str, Section] = {}


def declare_section(name: str, settings: Iterable[Setting], array: bool = False) -> Section:
    """Declare a config section; modules call this at import so their keys are known."""
    section = Section(name, {s.name: s for s in settings}, array)
    SECTIONS[name] = section
    return section


declare_section(
    "delayed",
    [
        Setting(
            "database_url",
            _str,
            "sqlite:///delayed.sqlite3",
            "SQLAlchemy URL of the database holding delayed_jobs.",
            ("DELAYED_DATABASE_URL",),
        ),
        Setting("table_name", _str, "delayed_jobs", "Name of the jobs table.", ("DELAYED_TABLE_NAME",)),
        Setting(
            "require",
            _str_list,
            [],
            "Modules to import before working, so their job classes are registered.",
            ("DELAYED_REQUIRE",),
        ),
        Setting(
            "max_claims",
            _int(1),
            5,
            "Jobs one worker runs at once (its thread-pool size) and claims per pickup.",
            ("DELAYED_MAX_CLAIMS", "MAX_CLAIMS"),
        ),
        Setting(
            "read_ahead",
            _int(1),
            5,
            "Candidate rows read per pickup on MySQL/MariaDB without SKIP LOCKED.",
            ("DELAYED_READ_AHEAD", "READ_AHEAD"),
        ),
        Setting(
            "sleep_delay",
            _duration(),
            5.0,
            "Seconds an idle worker waits before looking again (PostgreSQL also wakes on NOTIFY).",
            ("DELAYED_SLEEP_DELAY", "SLEEP_DELAY"),
        ),
        Setting(
            "max_attempts",
            _int(1),
            25,
            "Runs a job gets before it is marked failed.",
            ("DELAYED_MAX_ATTEMPTS", "MAX_ATTEMPTS"),
        ),
        Setting(
            "max_run_time",
            _duration(positive=True),
            1200.0,
            "Longest a job may run; the lock timeout is this plus 30 s. 0 is refused.",
            ("DELAYED_MAX_RUN_TIME", "MAX_RUN_TIME"),
        ),
        Setting(
            "queues",
            _str_list,
            [],
            "Queues this worker works off; empty means every queue (including none).",
            ("DELAYED_QUEUES", "QUEUES", "QUEUE"),
        ),
        Setting(
            "default_queue_name",
            _str,
            "default",
            "Queue of a job that names none.",
            ("DELAYED_DEFAULT_QUEUE_NAME",),
        ),
        Setting(
            "default_priority",
            _int_or_name,
            10,
            "Priority of a job that names none (a number or a priority name).",
            ("DELAYED_DEFAULT_PRIORITY",),
        ),
        Setting(
            "min_priority",
            _optional(_int_or_name),
            None,
            "Lowest priority number this worker picks up (inclusive).",
            ("DELAYED_MIN_PRIORITY", "MIN_PRIORITY"),
        ),
        Setting(
            "max_priority",
            _optional(_int_or_name),
            None,
            "Highest priority number this worker picks up (inclusive).",
            ("DELAYED_MAX_PRIORITY", "MAX_PRIORITY"),
        ),
        Setting(
            "destroy_failed_jobs",
            _bool,
            False,
            "Delete jobs that exhaust their attempts instead of keeping them with failed_at.",
            ("DELAYED_DESTROY_FAILED_JOBS",),
        ),
        Setting(
            "priority_names",
            _priority_names,
            {"interactive": 0, "user_visible": 10, "eventual": 20, "reporting": 30},
            "Named priority ranges: name = lower bound; one must start at 0.",
        ),
        Setting(
            "priority_alerts",
            _optional(parse_alerts),
            None,
            "Alert thresholds per priority name: name = {age, run_time, attempts}; false removes one. "
            "Default names start from the Ruby gem's thresholds, custom names from none.",
        ),
        Setting(
            "listen_notify",
            _bool,
            True,
            "On PostgreSQL, wake idle workers with LISTEN/NOTIFY instead of waiting sleep_delay.",
            ("DELAYED_LISTEN_NOTIFY",),
        ),
        Setting(
            "log_level",
            _log_level,
            "INFO",
            "Level of the 'delayed' logger for the CLI commands.",
            ("DELAYED_LOG_LEVEL",),
        ),
    ],
)


# ----------------------------------------------------------------------------- the config
REENQUEUE_BUFFER = 30.0  # seconds added to max_run_time to get the lock timeout (Ruby gem)


@dataclass
class Config:
    """Resolved settings. `config.max_claims` reads `[delayed]`; `config.section(x)` others."""

    values: dict[str, Any] = field(default_factory=dict)
    sections: dict[str, Any] = field(default_factory=dict)
    source: str = "defaults"

    def __getattr__(self, name: str) -> Any:
        values = self.__dict__.get("values", {})
        if name in values:
            return values[name]
        raise AttributeError(f"no setting named {name!r} in [delayed]")

    def section(self, name: str) -> Any:
        """The parsed values of a non-core section: a dict, or a list of dicts for arrays."""
        if name not in SECTIONS:
            raise KeyError(f"no config section named [{name}]")
        if name in self.sections:
            return self.sections[name]
        return [] if SECTIONS[name].array else _defaults(SECTIONS[name])

    @property
    def lock_timeout(self) -> float:
        """Seconds after which another worker may take over a job's lock."""
        return float(self.max_run_time) + REENQUEUE_BUFFER

    def replace(self, **overrides: Any) -> Config:
        """A copy with some `[delayed]` settings changed (each checked like the file's)."""
        values = dict(self.values)
        values.update(_parse_mapping(SECTIONS["delayed"], overrides, "arguments"))
        return Config(values, dict(self.sections), self.source)


def _defaults(section: Section) -> dict[str, Any]:
    return {name: _copy(s.default) for name, s in section.settings.items()}


def _copy(value: Any) -> Any:
    if isinstance(value, list):
        return list(value)
    if isinstance(value, dict):
        return dict(value)
    return value


def _parse_value(section: Section, key: str, value: Any, source: str) -> Any:
    setting = section.settings.get(key)
    if setting is None:
        known = ", ".join(sorted(section.settings))
        raise ConfigError(f"{source}: [{section.name}] unknown key {key!r}; known keys: {known}")
    try:
        return setting.parse(value)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{source}: [{section.name}] {key}: {exc}") from None


def _parse_mapping(section: Section, raw: Mapping[str, Any], source: str) -> dict[str, Any]:
    return {key: _parse_value(section, key, value, source) for key, value in raw.items()}


def _env_values(section: Section, environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    prefix = "DELAYED_" if section.name == "delayed" else f"DELAYED_{section.name.upper()}_"
    for setting in section.settings.values():
        generic = prefix + setting.name.upper()
        names = setting.env if generic in setting.env else (*setting.env, generic)
        for env_name in names:
            if env_name in environ:
                source = f"environment variable {env_name}"
                values[setting.name] = _parse_value(section, setting.name, environ[env_name], source)
                break
    return values


def read_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and parse a TOML file, turning every failure into a ConfigError naming the file."""
    file = Path(path)
    try:
        with file.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{file}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read config file: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from None


def build_config(
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Defaults, then the file, then the environment, then explicit overrides."""
    environ = os.environ if environ is None else environ
    raw = read_file(path) if path is not None else {}
    source = str(path) if path is not None else "defaults"
    for name in raw:
        if name not in SECTIONS:
            known = ", ".join(f"[{n}]" for n in SECTIONS)
            raise ConfigError(f"{source}: unknown section [{name}]; known sections: {known}")
    config = Config(_defaults(SECTIONS["delayed"]), {}, source)
    for name, section in SECTIONS.items():
        if name not in raw:
            continue
        body = raw[name]
        if section.array:
            if not isinstance(body, list):
                raise ConfigError(f"{source}: [[{name}]] must be an array of tables")
            config.sections[name] = [
                {**_defaults(section), **_parse_mapping(section, item, f"{source} [[{name}]] #{i + 1}")}
                for i, item in enumerate(body)
            ]
        elif not isinstance(body, dict):
            raise ConfigError(f"{source}: [{name}] must be a table")
        elif name == "delayed":
            config.values.update(_parse_mapping(section, body, source))
        else:
            config.sections[name] = {**_defaults(section), **_parse_mapping(section, body, source)}
    config.values.update(_env_values(SECTIONS["delayed"], environ))
    for name, section in SECTIONS.items():
        # Tables other than [delayed] read DELAYED_<SECTION>_<KEY>; arrays ([[pool]]) do not.
        if name == "delayed" or section.array:
            continue
        from_env = _env_values(section, environ)
        if from_env:
            config.sections[name] = {**config.section(name), **from_env}
    if overrides:
        clean = {k: v for k, v in overrides.items() if v is not None}
        config.values.update(_parse_mapping(SECTIONS["delayed"], clean, "arguments"))
    return config


# ----------------------------------------------------------------------------- process-wide
_current: Config | None = None


def get_config() -> Config:
    """The process's configuration; built from defaults and the environment on first use."""
    global _current
    if _current is None:
        _current = build_config()
    return _current


def set_config(config: Config) -> Config:
    """Make `config` the process's configuration (the CLI does this after reading -c)."""
    global _current
    _current = config
    return config


def configure(path: str | os.PathLike[str] | None = None, **settings: Any) -> Config:
    """Set `[delayed]` settings in code, e.g. `delayed.configure(database_url=..., max_claims=10)`.

    With `path`, the file is read first (then the environment, then these arguments).
    Without it, the arguments change the current configuration.
    """
    if path is not None:
        return set_config(build_config(path, overrides=settings))
    base = get_config()
    config = base.replace(**settings)
    return set_config(config)


# ----------------------------------------------------------------------------- [tracing]
def _choice(*allowed: str) -> Parser:
    """One of a fixed set of strings; the error lists them."""

    def parse(value: Any) -> str:
        if not isinstance(value, str) or value not in allowed:
            raise ValueError(f"expected one of {', '.join(repr(a) for a in allowed)}, got {value!r}")
        return value

    return parse


declare_section(
    "tracing",
    [
        Setting(
            "enabled",
            _bool,
            False,
            "OpenTelemetry spans for enqueue and execution (needs `pip install pydelayed[otel]`).",
        ),
        Setting(
            "propagation_style",
            _choice("link", "child", "none"),
            "link",
            "How a job's process span relates to its publish span: a link (new trace), its child, or none.",
        ),
        Setting(
            "span_naming",
            _choice("queue", "job_class"),
            "queue",
            'Span names start with the queue ("mail process") or the job class ("SendEmail process").',
        ),
    ],
)


# ----------------------------------------------------------------------------- [statsd] [monitor]
def _sample_rate(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"expected a number between 0 and 1, got {value!r}")
    rate = float(value)
    if not 0 < rate <= 1:
        raise ValueError(f"expected a number above 0 and at most 1, got {value!r}")
    return rate


declare_section(
    "statsd",
    [
        Setting("host", _optional(_str), None, "StatsD host (UDP); unset disables StatsD."),
        Setting("port", _int(1), 8125, "StatsD UDP port."),
        Setting("prefix", _str, "delayed", "Prefix of every metric name (empty for none)."),
        Setting(
            "sample_rate",
            _sample_rate,
            1.0,
            "Fraction of job timings and counters sent (gauges are always sent).",
        ),
    ],
)

declare_section(
    "monitor",
    [
        Setting("interval", _duration(positive=True), 60.0, "Seconds the monitor waits between passes."),
        Setting(
            "queues",
            _str_list,
            [],
            "Queues the monitor reports on; empty means [delayed] queues (or every queue).",
        ),
    ],
)


# ----------------------------------------------------------------------------- [supervisor] [[pool]]
def _import_path(value: Any) -> str:
    """'package.module:function', checked for shape here and imported by the supervisor."""
    if not isinstance(value, str) or value.count(":") != 1 or not all(value.split(":")):
        raise ValueError(f"expected 'module:function' (e.g. 'myapp.tracing:setup'), got {value!r}")
    return value.strip()


declare_section(
    "supervisor",
    [
        Setting("workers", _int(0), 2, "Child processes of the default pool (when no [[pool]] is given)."),
        Setting(
            "max_claims",
            _optional(_int(1)),
            None,
            "Threads per child (jobs it runs at once); unset means [delayed] max_claims.",
        ),
        Setting(
            "graceful_timeout",
            _duration(),
            30.0,
            "Seconds children get to finish running jobs on TERM/INT/HUP before SIGKILL.",
        ),
        Setting(
            "max_memory_mb",
            _optional(_int(1)),
            None,
            "A child whose RSS passes this many MiB is drained and replaced; unset means no limit.",
        ),
        Setting("pidfile", _optional(_str), None, "File the master writes its pid to (removed at exit)."),
        Setting("log_level", _optional(_log_level), None, "Log level; unset means [delayed] log_level."),
        Setting("log_file", _optional(_str), None, "Append logs here instead of stderr; USR1 reopens it."),
        Setting(
            "heartbeat_timeout",
            _duration(positive=True),
            30.0,
            "A child silent for this long (it beats every second) is killed and replaced.",
        ),
        Setting(
            "max_run_time_grace",
            _duration(),
            2.0,
            "Seconds past a job's max_run_time before its child is killed (it stops claiming at once).",
        ),
        Setting(
            "on_worker_boot",
            _optional(_import_path),
            None,
            "'module:function' called with no arguments in each child after the fork, before it works.",
        ),
        Setting(
            "monitor",
            _bool,
            False,
            "Also run one child with the monitor (delayed.monitor.Monitor) under the supervisor.",
        ),
    ],
)

declare_section(
    "pool",
    [
        Setting("name", _optional(_str), None, "Name shown in process titles and logs (default pool-N)."),
        Setting("queues", _optional(_str_list), None, "Queues of this pool; unset means [delayed] queues."),
        Setting("min_priority", _optional(_int_or_name), None, "Lowest priority picked up (inclusive)."),
        Setting("max_priority", _optional(_int_or_name), None, "Highest priority picked up (inclusive)."),
        Setting("workers", _optional(_int(0)), None, "Child processes; unset means [supervisor] workers."),
        Setting(
            "max_claims",
            _optional(_int(1)),
            None,
            "Threads per child; unset means [supervisor] max_claims, then [delayed] max_claims.",
        ),
    ],
    array=True,
)
