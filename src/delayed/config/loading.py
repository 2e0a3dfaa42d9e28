"""Building a Config: defaults, then the file, then the environment, then explicit values.

Errors name the source (the file, the environment variable, "arguments") and the key. The
process-wide config (`get_config`) is read only at the edges: the CLI, `delayed.configure`,
and the enqueue API; everything below them takes the Config it uses as an argument.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .checks import check_priority_ranges, check_table_name
from .sections import (
    CronSettings,
    DelayedSettings,
    MonitorSettings,
    PoolSettings,
    SchedulerSettings,
    StatsdSettings,
    SupervisorSettings,
    TracingSettings,
)
from .table import SECTIONS, Section, parse_mapping, parse_value

log = logging.getLogger("delayed.config")

REENQUEUE_BUFFER = 30.0  # seconds added to max_run_time to get the lock timeout (Ruby gem)

# DELAYED_* variables that are not settings and must not be warned about: the test suite's own
# (DELAYED_TEST_*) and those of tools around pydelayed. Add yours with `ignore_env_prefix`.
_IGNORED_ENV_PREFIXES: list[str] = ["DELAYED_TEST_", "DELAYED_DJANGO"]
_warned_env: set[str] = set()


@dataclass(frozen=True)
class Config(DelayedSettings):
    """Resolved settings: `[delayed]` as attributes, every other section as a typed view.

    `config.max_claims` reads `[delayed]`; `config.supervisor.workers`, `config.pools`,
    `config.statsd`, `config.monitor` and `config.tracing` the core sections;
    `config.section(name)` any declared section (optional features declare their own).
    """

    sections: Mapping[str, Any] = field(default_factory=dict, repr=False)
    source: str = "defaults"

    @property
    def lock_timeout(self) -> float:
        """Seconds after which another worker may take over a job's lock."""
        return float(self.max_run_time) + REENQUEUE_BUFFER

    def section(self, name: str) -> Any:
        """The typed view of section `name` (a tuple of views for an array of tables)."""
        declared = SECTIONS.get(name)
        if declared is None:
            raise KeyError(f"no config section named [{name}]")
        if name in self.sections:
            return self.sections[name]
        return () if declared.array else declared.defaults()

    @property
    def supervisor(self) -> SupervisorSettings:
        return self.section("supervisor")  # type: ignore[no-any-return]

    @property
    def pools(self) -> tuple[PoolSettings, ...]:
        return self.section("pool")  # type: ignore[no-any-return]

    @property
    def statsd(self) -> StatsdSettings:
        return self.section("statsd")  # type: ignore[no-any-return]

    @property
    def monitor(self) -> MonitorSettings:
        return self.section("monitor")  # type: ignore[no-any-return]

    @property
    def tracing(self) -> TracingSettings:
        return self.section("tracing")  # type: ignore[no-any-return]

    @property
    def cron(self) -> tuple[CronSettings, ...]:
        return self.section("cron")  # type: ignore[no-any-return]

    @property
    def scheduler(self) -> SchedulerSettings:
        return self.section("scheduler")  # type: ignore[no-any-return]

    def replace(self, **overrides: Any) -> Config:
        """A copy with some `[delayed]` settings changed (each checked like the file's)."""
        config = dataclasses.replace(self, **parse_mapping(SECTIONS["delayed"], overrides, "arguments"))
        origin = lambda key: "arguments" if key in overrides else config.source  # noqa: E731
        check_priority_ranges(config, origin, config.source)
        check_table_name(config, origin)
        return config

    def with_section(self, name: str, **overrides: Any) -> Config:
        """A copy with some keys of table `name` changed (each checked like the file's)."""
        declared = SECTIONS[name]
        if declared.array:
            raise ValueError(f"[[{name}]] is an array of tables; build the config from a file instead")
        updated = dataclasses.replace(self.section(name), **parse_mapping(declared, overrides, "arguments"))
        return dataclasses.replace(self, sections={**self.sections, name: updated})


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


def _env_values(section: Section, environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for setting in section.settings.values():
        for env_name in section.env_names(setting):
            if env_name in environ:
                source = f"environment variable {env_name}"
                values[setting.name] = parse_value(section, setting.name, environ[env_name], source)
                break
    return values


def _from_file(section: Section, body: Any, source: str) -> Any:
    """The typed view(s) of one section of the file."""
    if section.array:
        if not isinstance(body, list):
            raise ConfigError(f"{source}: [[{section.name}]] must be an array of tables")
        return tuple(
            section.cls(**parse_mapping(section, item, f"{source} [[{section.name}]] #{i + 1}"))
            for i, item in enumerate(body)
        )
    if not isinstance(body, dict):
        raise ConfigError(f"{source}: [{section.name}] must be a table")
    return section.cls(**parse_mapping(section, body, source))


def build_config(
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    section_overrides: Mapping[str, Mapping[str, Any]] | None = None,
    overrides_source: str = "arguments",
) -> Config:
    """Defaults, then the file, then the environment, then explicit overrides.

    `overrides` change `[delayed]` keys; `section_overrides` other tables' keys
    (`{"monitor": {"interval": 5}}`), as CLI flags do. A None value means "not given".
    `overrides_source` names them in errors ("the command line").
    """
    environ = os.environ if environ is None else environ
    _warn_unknown_env(environ)
    raw = read_file(path) if path is not None else {}
    source = str(path) if path is not None else "defaults"
    for name in raw:
        if name not in SECTIONS:
            known = ", ".join(f"[[{n}]]" if s.array else f"[{n}]" for n, s in SECTIONS.items())
            raise ConfigError(f"{source}: unknown section [{name}]; known sections: {known}")
    delayed = SECTIONS["delayed"]
    values: dict[str, Any] = {}
    if "delayed" in raw:
        if not isinstance(raw["delayed"], dict):
            raise ConfigError(f"{source}: [delayed] must be a table")
        values.update(parse_mapping(delayed, raw["delayed"], source))
    values.update(_env_values(delayed, environ))
    values.update(_given(delayed, overrides))
    sections: dict[str, Any] = {}
    for name, declared in SECTIONS.items():
        if name == "delayed":
            continue
        view = _from_file(declared, raw[name], source) if name in raw else declared.defaults()
        if declared.array:
            if name in raw:
                sections[name] = view
            continue
        changes = {**_env_values(declared, environ), **_given(declared, (section_overrides or {}).get(name))}
        sections[name] = dataclasses.replace(view, **changes) if changes else view
    config = Config(**values, sections=sections, source=source)
    origin = _origins(delayed, raw.get("delayed", {}), environ, overrides, source, overrides_source)
    check_priority_ranges(config, origin, source)
    check_table_name(config, origin)
    return config


def _origins(
    section: Section,
    from_file: Mapping[str, Any],
    environ: Mapping[str, str],
    overrides: Mapping[str, Any] | None,
    source: str,
    overrides_source: str,
) -> Callable[[str], str]:
    """For messages: where the value of a `[delayed]` key came from (the last layer that set it)."""

    def origin(key: str) -> str:
        if (overrides or {}).get(key) is not None:
            return overrides_source
        for env_name in section.env_names(section.settings[key]):
            if env_name in environ:
                return f"environment variable {env_name}"
        return f"{source} [delayed]" if key in from_file else "the default"

    return origin


def ignore_env_prefix(prefix: str) -> None:
    """Do not warn about DELAYED_* variables starting with `prefix` (they are not settings)."""
    _IGNORED_ENV_PREFIXES.append(prefix)


def known_env_names() -> set[str]:
    """Every environment variable some declared setting reads."""
    return {
        name
        for section in SECTIONS.values()
        for setting in section.settings.values()
        for name in section.env_names(setting)
    }


def _warn_unknown_env(environ: Mapping[str, str]) -> None:
    """Log once per name a DELAYED_* variable no setting reads: a typo is otherwise silent."""
    unknown = [
        name
        for name in environ
        if name.startswith("DELAYED_")
        and name not in _warned_env
        and not any(name.startswith(prefix) for prefix in _IGNORED_ENV_PREFIXES)
    ]
    if not unknown:
        return
    known = known_env_names()
    for name in unknown:
        if name in known:
            continue
        _warned_env.add(name)
        close = difflib.get_close_matches(name, sorted(known), n=1)
        hint = f"; did you mean {close[0]}?" if close else "; see docs/configuration.md for the names"
        log.warning("environment variable %s is not a pydelayed setting and is ignored%s", name, hint)


def _given(section: Section, overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    clean = {k: value for k, value in (overrides or {}).items() if value is not None}
    return parse_mapping(section, clean, "arguments")


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
    return set_config(get_config().replace(**settings))
