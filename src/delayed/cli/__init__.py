"""`delayed`: the command line.

    delayed migrate            create the table (or --sql: print the DDL)
    delayed work               one worker process
    delayed supervise          the preforking master (also installed as `delayed-supervisor`)
    delayed jobs ...           list, show, retry, discard, unlock, stats
    delayed monitor            the gauges, once or every interval (--prometheus: an exporter)
    delayed web                the dashboard (delayed.web; pip install 'pydelayed[web]')
    delayed cron ...           recurring jobs: list, run now, pause, resume
    delayed workers            the worker registry: live workers, heartbeat ages, jobs held

Each command's flags come from the settings table (delayed.cli.options); one logging set-up
(delayed.logs) and one exit-status convention serve them all.
"""

from __future__ import annotations

import click

from ..web.command import web
from .cron import cron_group
from .jobs import jobs_group
from .migrate import migrate
from .monitor import monitor
from .supervise import supervise
from .work import work
from .workers import workers


@click.group()
@click.version_option(package_name="pydelayed")
def main() -> None:
    """pydelayed: background jobs kept in a SQL table."""


for _command in (migrate, work, supervise, jobs_group, monitor, web, cron_group, workers):
    main.add_command(_command)


def supervise_alias() -> None:
    """`delayed-supervisor [-c FILE] [--check]`: the same as `delayed supervise`."""
    supervise(prog_name="delayed-supervisor")


__all__ = ["main", "supervise_alias"]
