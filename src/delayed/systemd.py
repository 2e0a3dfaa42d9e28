"""sd_notify without libsystemd: one datagram per message to $NOTIFY_SOCKET.

systemd (Type=notify) hands the main process the path of an AF_UNIX datagram socket in
NOTIFY_SOCKET; a leading '@' means an abstract socket (the name starts with a NUL byte).
Messages are newline-separated `KEY=value` lines: READY=1, RELOADING=1, STOPPING=1,
STATUS=..., WATCHDOG=1. Outside systemd (no NOTIFY_SOCKET) every call is a cheap no-op, so
the supervisor never has to ask whether it runs under systemd.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping, MutableMapping

log = logging.getLogger("delayed.systemd")


def socket_address(path: str) -> str | bytes:
    """The address to send to: '@name' is the abstract socket '\\0name'."""
    if path.startswith("@"):
        return b"\0" + path[1:].encode()
    return path


def notify(message: str, path: str | None) -> bool:
    """Send one datagram; False (and a debug log) when there is no socket or sending fails.

    A lost notification must never stop the supervisor, so errors are swallowed: systemd
    then sees a missing READY or WATCHDOG and acts on its own timeouts.
    """
    if not path:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(message.encode(), socket_address(path))
        return True
    except OSError as exc:
        log.debug("sd_notify to %s failed: %s", path, exc)
        return False


def watchdog_interval(environ: Mapping[str, str]) -> float | None:
    """Half of WATCHDOG_USEC in seconds (systemd's advice), or None when no watchdog is set.

    WATCHDOG_PID, when present, must name this process: the watchdog is the main
    process's job, not a child's.
    """
    usec = environ.get("WATCHDOG_USEC", "").strip()
    pid = environ.get("WATCHDOG_PID", "").strip()
    if not usec.isdigit() or int(usec) <= 0:
        return None
    if pid and pid != str(os.getpid()):
        return None
    return int(usec) / 2_000_000


class Notifier:
    """The supervisor's link to systemd: READY once, STATUS on change, WATCHDOG on time.

    Built from the environment, which it then cleans (NOTIFY_SOCKET, WATCHDOG_*), so child
    processes and the jobs they run never talk to systemd in the master's name.
    """

    def __init__(self, environ: MutableMapping[str, str] | None = None) -> None:
        environ = os.environ if environ is None else environ
        self.path = environ.get("NOTIFY_SOCKET") or None
        self.watchdog = watchdog_interval(environ) if self.path else None
        for key in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
            environ.pop(key, None)
        self._last_status: str | None = None
        self._next_ping = 0.0

    @property
    def enabled(self) -> bool:
        return self.path is not None

    def send(self, *lines: str) -> bool:
        return notify("\n".join(lines), self.path)

    def ready(self, status: str | None = None) -> None:
        self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def reloading(self) -> None:
        # MONOTONIC_USEC lets Type=notify-reload (systemd 253+) match this to the HUP it sent.
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self, status: str | None = None) -> None:
        self.send("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> None:
        """STATUS=text, only when it changed (the loop calls this every turn)."""
        if text != self._last_status:
            self._last_status = text
            self.send(f"STATUS={text}")

    def ping(self, now: float | None = None) -> None:
        """WATCHDOG=1 when half the watchdog interval has passed since the last one."""
        if self.watchdog is None:
            return
        now = time.monotonic() if now is None else now
        if now >= self._next_ping:
            self.send("WATCHDOG=1")
            self._next_ping = now + self.watchdog

    def seconds_to_ping(self, now: float) -> float | None:
        """How long the master may sleep before the next WATCHDOG=1 is due."""
        if self.watchdog is None:
            return None
        return max(0.0, self._next_ping - now)
