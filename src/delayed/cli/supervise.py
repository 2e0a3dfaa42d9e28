"""`delayed supervise -c FILE` (alias `delayed-supervisor`): the preforking master."""

from __future__ import annotations

import sys

import click

from ..supervisor import serve
from .options import config_file_option


@click.command("supervise")
@config_file_option
@click.option("--check", is_flag=True, help="Check the config and exit (0 when good, 2 when not).")
def supervise(config_file: str | None, check: bool) -> None:
    """Run workers under a preforking master: drains on TERM, reloads on HUP (see conf/delayed.toml)."""
    sys.exit(serve(config_file, check))
