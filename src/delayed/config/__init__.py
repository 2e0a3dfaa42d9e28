"""Configuration: every setting declared once, read from TOML, the environment and flags.

Precedence, lowest first: defaults, the file (`-c delayed.toml`), the environment, explicit
values (`delayed.configure(...)` or CLI flags). Errors name the source and the key.

- `values.py`: the value kinds (integer, duration, list of strings, ...);
- `table.py`: how a setting and a section are declared (`setting`, `section`);
- `sections.py`: the core sections as typed, frozen views;
- `loading.py`: `Config`, `build_config`, and the process-wide `get_config`/`configure`;
- `reference.py`: conf/delayed.toml and docs/configuration.md, generated from the table.
"""

from __future__ import annotations

from .loading import REENQUEUE_BUFFER, Config, build_config, configure, get_config, read_file, set_config
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
from .table import SECTIONS, Section, Setting, section, setting, values_of

__all__ = [
    "REENQUEUE_BUFFER",
    "SECTIONS",
    "Config",
    "CronSettings",
    "DelayedSettings",
    "MonitorSettings",
    "PoolSettings",
    "SchedulerSettings",
    "Section",
    "Setting",
    "StatsdSettings",
    "SupervisorSettings",
    "TracingSettings",
    "build_config",
    "configure",
    "get_config",
    "read_file",
    "section",
    "set_config",
    "setting",
    "values_of",
]
