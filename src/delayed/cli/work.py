"""`delayed work`: one worker process, until SIGTERM/SIGINT or (`--exit-on-complete`) idle.

Flags mirror the Ruby rake task's environment knobs (QUEUE/QUEUES, MAX_CLAIMS, MIN_PRIORITY,
MAX_PRIORITY), which are read as well: flags win over the environment, which wins over the
file given with -c.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import click

from .. import statsd
from ..errors import DelayedError
from ..tracing import instrument_from_config
from ..worker import Worker
from .options import config_options, fail, load_config


@click.command("work")
@config_options("work")
@click.option(
    "--exit-on-complete",
    is_flag=True,
    help="Exit 0 once no job is ready; exit 1 if the table or database is missing, or after "
    "6 failed claims in a row.",
)
def work(exit_on_complete: bool, **params: Any) -> None:
    """Work off jobs until SIGTERM/SIGINT (or, with --exit-on-complete, until none is ready)."""
    config = load_config("work", params)
    try:
        instrument_from_config(config)
        worker = Worker(config=config)
    except DelayedError as exc:
        fail(str(exc))
    statsd.install(config)
    status = worker.run(exit_on_complete=exit_on_complete)
    if status != 0:
        # A second signal (the running jobs' locks are released and their daemon threads
        # abandoned) or an unusable database: leave now, without running exit handlers while
        # abandoned jobs may still be running.
        logging.shutdown()
        os._exit(status)
    sys.exit(status)
