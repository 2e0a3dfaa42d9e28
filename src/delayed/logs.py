"""One logging set-up for every command: `delayed work|migrate|jobs|monitor|supervise`.

Lines go to stderr (systemd's journal) or, for the supervisor's `log_file`, appended to a
file that USR1 reopens after rotation. Only the handler installed here is ever replaced,
so an application that embeds pydelayed keeps its own handlers.
"""

from __future__ import annotations

import contextlib
import logging
import sys

LOG_FORMAT = "%(asctime)s %(levelname)s [%(process)d] [%(name)s] %(message)s"

_installed: logging.Handler | None = None


def setup_logging(level: str, log_file: str | None = None) -> None:
    """Log at `level` to `log_file` (appending) or stderr, replacing only our own handler."""
    global _installed
    root = logging.getLogger()
    handler: logging.Handler = (
        logging.FileHandler(log_file, encoding="utf-8") if log_file else logging.StreamHandler(sys.stderr)
    )
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    if _installed is not None:
        root.removeHandler(_installed)
        _installed.close()
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    _installed = handler


def reopen_log_files() -> int:
    """Reopen every file handler of the root and 'delayed' loggers (after log rotation)."""
    reopened = 0
    seen: set[int] = set()
    for logger in (logging.getLogger(), logging.getLogger("delayed")):
        for handler in logger.handlers:
            if not isinstance(handler, logging.FileHandler) or id(handler) in seen:
                continue
            seen.add(id(handler))
            with handler.lock or contextlib.nullcontext():
                if handler.stream is not None:
                    with contextlib.suppress(OSError):
                        handler.stream.close()
                handler.stream = handler._open()
            reopened += 1
    return reopened
