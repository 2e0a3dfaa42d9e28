"""`delayed-supervisor -c delayed.toml`: the preforking master.

The master loads the config and the user's job modules, then forks children; each child
runs a `Worker` (a thread pool of `max_claims`) for its pool and reports, over a pipe,
which job each thread runs and since when. The master itself never works a job and holds
no database connection between its short reclaim writes.

One question per module:

    arbiter.py        the master loop and its handle_<signal> methods
    settings.py       what the config says: pools, timeouts, the boot hook (checked at start and on HUP)
    pools.py          a pool at run time: wanted children (TTIN/TTOU), crash-loop back-off
    child.py          the master's record of one child: its state, its jobs, why it ended
    reclaim.py        giving back (or counting an attempt on) the rows a dead child held
    protocol.py       the child -> master report lines, encoded and decoded
    child_process.py  what runs in the forked child: its Worker (or monitor), its reports
    pidfile.py        the pidfile

`serve` is the whole program; `delayed supervise` (delayed.cli), its alias the
`delayed-supervisor` script, and `python -m delayed.supervisor` call it.
"""

from __future__ import annotations

import logging
import sys

from .. import prometheus, statsd
from ..config import set_config
from ..db import worker_engine_for
from ..errors import ConfigError, DelayedError
from ..logs import setup_logging
from ..schema import SchemaOutOfDate, check_current, get_table
from . import pidfile
from .arbiter import Supervisor
from .child import Reason, describe_status
from .settings import Pool, Settings, load_settings

__all__ = ["Pool", "Reason", "Settings", "Supervisor", "describe_status", "load_settings", "serve"]

PROG = "delayed-supervisor"


def _error(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2


def _schema_refusal(settings: Settings) -> str | None:
    """Why the schema is out of date (before any fork, so no child crash-loops on it), or None.

    The master holds no connection afterwards: the engine is disposed at once.
    """
    config = settings.config
    engine = worker_engine_for(config.database_url, config.connect_timeout, config.network_timeout)
    try:
        check_current(engine, get_table(config.table_name))
    except SchemaOutOfDate as exc:
        return str(exc)
    finally:
        engine.dispose()
    return None


def serve(path: str | None, check: bool = False) -> int:
    """Run the supervisor on the config file at `path` (None: defaults and environment).

    Returns the exit status: 0 after a stop signal (or a good `check`), 1 when the loop
    itself failed, 2 for a bad config (its message on stderr, naming the file and key).
    """
    try:
        settings = load_settings(path)
    except DelayedError as exc:  # ConfigError, or [tracing] enabled without the otel extra
        return _error(str(exc))
    except Exception as exc:  # a job module that raises on import
        return _error(f"importing the modules in require failed: {type(exc).__name__}: {exc}")
    if check:
        print(f"{path or 'defaults'}: OK ({', '.join(p.name for p in settings.pools)})")
        return 0
    set_config(settings.config)
    statsd.install(settings.config)  # the master's own events: children spawned, exited, killed
    prometheus.clear_multiproc_dir(settings.config)  # last run's metric files; children write anew
    try:
        setup_logging(settings.log_level, settings.log_file)
    except OSError as exc:
        return _error(f"{path}: [supervisor] log_file: {exc}")
    refusal = _schema_refusal(settings)
    if refusal is not None:
        print(f"{PROG}: error: {refusal}", file=sys.stderr)
        return 1
    if settings.pidfile:
        try:
            pidfile.write(settings.pidfile)
        except (ConfigError, OSError) as exc:
            return _error(f"{path}: [supervisor] pidfile: {exc}")
    try:
        return Supervisor(settings).run()
    finally:
        if settings.pidfile:
            pidfile.remove(settings.pidfile)
        logging.shutdown()
