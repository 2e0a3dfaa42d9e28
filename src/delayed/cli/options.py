"""What every `delayed` command shares: flags generated from the settings table, loading the
config, and the exit status of bad input.

A setting offers a flag to the commands its declaration names (delayed.config.sections:
`flags=`, `commands=`); `config_options("work")` adds `-c/--config` and those flags to a
click command, and `load_config("work", params)` builds the Config from defaults, the file,
the environment and the flags (in that order of precedence), makes it the process's, sets
up logging and imports the `require` modules.

Exit statuses, the same for every command: 0 done; 1 the work failed at run time (the
database could not be reached or refused a statement, an id was not found); 2 bad input (a
flag, the config file, a setting, a module in `require` that cannot be imported).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

import click

from ..config import SECTIONS, Config, Section, Setting, build_config, set_config
from ..config.table import parse_value
from ..config.values import string_list
from ..errors import ConfigError
from ..loader import import_modules
from ..logs import setup_logging

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


def fail(message: str, status: int = EXIT_BAD_INPUT) -> NoReturn:
    """Print `Error: message` and exit (2, bad input, unless told otherwise)."""
    click.echo(f"Error: {message}", err=True)
    sys.exit(status)


def _flagged(command: str) -> Iterator[tuple[Section, Setting]]:
    for section in SECTIONS.values():
        for setting in section.settings.values():
            if setting.flags and command in setting.commands:
                yield section, setting


def _dest(section: Section, setting: Setting) -> str:
    return setting.name if section.name == "delayed" else f"{section.name}_{setting.name}"


def _help(section: Section, setting: Setting) -> str:
    first = setting.doc.split(". ")[0].rstrip(".")
    env = section.env_names(setting)
    listed = " (repeatable, or comma-separated)" if setting.parse is string_list else ""
    return f"{first}{listed}." + (f" Env: {', '.join(env)}." if env else "")


config_file_option = click.option(
    "-c",
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="TOML config file (see conf/delayed.toml).",
)


def config_options(command: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add `-c/--config` and every setting flag offered to `command`."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        for section, setting in reversed(list(_flagged(command))):
            multiple = setting.parse is string_list
            func = click.option(
                *setting.flags,
                _dest(section, setting),
                multiple=multiple,
                default=None,
                help=_help(section, setting),
            )(func)
        return config_file_option(func)

    return decorate


def flag_values(command: str, params: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The flags given to `command`, parsed, as {section: {key: value}}; errors name the flag."""
    given: dict[str, dict[str, Any]] = {}
    for section, setting in _flagged(command):
        raw = params.get(_dest(section, setting))
        if raw is None or raw == ():
            continue
        if isinstance(raw, tuple):
            raw = ",".join(raw)
        value = parse_value(section, setting.name, raw, f"option {'/'.join(setting.flags)}")
        given.setdefault(section.name, {})[setting.name] = value
    return given


def load_config(command: str, params: dict[str, Any], *, require_modules: bool = True) -> Config:
    """Build the config (file, env, flags), make it current, set up logging, import `require`.

    A flag for `require` adds to the file's list rather than replacing it.
    """
    try:
        flags = flag_values(command, params)
        delayed_flags = flags.pop("delayed", {})
        extra_require = delayed_flags.pop("require", [])
        config = build_config(
            params.get("config_file"),
            overrides=delayed_flags,
            section_overrides=flags,
            overrides_source="the command line",
        )
        if extra_require:
            config = config.replace(require=[*config.require, *extra_require])
        set_config(config)
        setup_logging(config.log_level)
        if require_modules:
            import_modules(config.require)
        return config
    except ConfigError as exc:
        fail(str(exc))
