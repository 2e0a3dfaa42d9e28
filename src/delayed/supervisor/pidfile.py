"""The master's pidfile: written at start (refusing if another live supervisor owns it), removed at exit."""

from __future__ import annotations

import os

from ..errors import ConfigError


def write(path: str) -> None:
    """Write our pid to `path` atomically; a stale file (its process gone) is replaced.

    ConfigError when the file names a running process: another supervisor may be running,
    and two masters on one pidfile would each believe they own it.
    """
    try:
        with open(path) as handle:
            other = int(handle.read().strip() or 0)
    except (OSError, ValueError):
        other = 0
    if other and other != os.getpid():
        try:
            os.kill(other, 0)
        except ProcessLookupError:
            pass
        except PermissionError:
            raise ConfigError(f"pidfile {path} names process {other}, which is running") from None
        else:
            raise ConfigError(
                f"pidfile {path} names process {other}, which is running; is another supervisor running?"
            )
    temp = f"{path}.{os.getpid()}.tmp"
    with open(temp, "w") as handle:
        handle.write(f"{os.getpid()}\n")
    os.replace(temp, path)


def remove(path: str) -> None:
    """Remove `path` if it still holds our pid (a successor may have taken it over)."""
    try:
        with open(path) as handle:
            if handle.read().strip() == str(os.getpid()):
                os.unlink(path)
    except OSError:
        pass
