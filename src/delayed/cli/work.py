"""`delayed work`: one worker process, until SIGTERM/SIGINT or (`--exit-on-complete`) idle.

Flags mirror the Ruby rake task's environment knobs (QUEUE/QUEUES, MAX_CLAIMS, MIN_PRIORITY,
MAX_PRIORITY), which are read as well: flags win over the environment, which wins over the
file given with -c.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Any

import click

from .. import prometheus, statsd
from ..config import Config
from ..contrib.django.setup import setup_if_configured
from ..errors import DelayedError
from ..recurring import Scheduler, load_entries
from ..schema import SchemaOutOfDate
from ..tracing import instrument_from_config
from ..worker import Worker
from .options import EXIT_FAILED, config_options, fail, load_config


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
    try:  # Django (when DJANGO_SETTINGS_MODULE is set) before `require` may import its models
        setup_if_configured()
    except DelayedError as exc:
        fail(str(exc))
    config = load_config("work", params)
    try:
        instrument_from_config(config)
        worker = Worker(config=config)
    except DelayedError as exc:
        fail(str(exc))
    try:
        worker.check_schema()  # before any thread starts: one line, exit 1
    except SchemaOutOfDate as exc:
        fail(str(exc), EXIT_FAILED)
    statsd.install(config)
    prometheus.install(config)  # [prometheus] multiproc_dir: job counters and timings
    scheduler = _start_scheduler(config)
    status = worker.run(exit_on_complete=exit_on_complete)
    if scheduler is not None:  # let a tick in flight commit (one short transaction)
        stop, thread = scheduler
        stop.set()
        thread.join(5)
    if status != 0:
        # A second signal (the running jobs' locks are released and their daemon threads
        # abandoned) or an unusable database: leave now, without running exit handlers while
        # abandoned jobs may still be running.
        logging.shutdown()
        os._exit(status)
    sys.exit(status)


def _start_scheduler(config: Config) -> tuple[threading.Event, threading.Thread] | None:
    """With `[scheduler] in_work`, the cron scheduler in a daemon thread: its stop event and thread.

    Safe beside supervisors and other workers doing the same: each tick enqueues once.
    """
    if not config.scheduler.in_work:
        return None
    try:
        entries = load_entries(config)
    except DelayedError as exc:
        fail(str(exc))
    if not entries:
        return None
    stop = threading.Event()
    scheduler = Scheduler(config, entries)
    thread = threading.Thread(target=scheduler.run, args=(stop,), name="delayed-cron", daemon=True)
    thread.start()
    return stop, thread
