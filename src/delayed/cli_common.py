"""What every `delayed` command shares: reading the config, logging, and the exit-2 error.

Kept apart from cli.py so that command modules (jobs_cli, monitor_cli) can use it while
cli.py imports them to build the `delayed` group, with no import cycle.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

import click

from .config import Config, build_config, set_config
from .errors import ConfigError
from .loader import import_modules


def setup_logging(level: str) -> None:
    """Log lines to stderr with time, level and logger name."""
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s [%(name)s] %(message)s",
        stream=sys.stderr,
    )


def fail(message: str) -> None:
    """Print `Error: message` and exit 2, the status of every bad-input error."""
    click.echo(f"Error: {message}", err=True)
    sys.exit(2)


def load_config(config_file: str | None, overrides: dict[str, Any], require: tuple[str, ...] = ()) -> Config:
    """Build the config (file, env, flags), make it current, import the user's modules."""
    try:
        config = build_config(config_file, overrides=overrides)
        if require:
            config = config.replace(require=[*config.require, *require])
        set_config(config)
        setup_logging(config.log_level)
        import_modules(config.require)
        return config
    except ConfigError as exc:
        fail(str(exc))
        raise  # unreachable: fail() exits


config_option = click.option(
    "-c",
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="TOML config file ([delayed] section).",
)
database_option = click.option(
    "--database-url", default=None, help="Database URL (overrides the file and DELAYED_DATABASE_URL)."
)


def with_config(func: Callable[..., Any]) -> Callable[..., Any]:
    return config_option(database_option(func))
