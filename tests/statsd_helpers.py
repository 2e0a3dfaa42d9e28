"""A real UDP StatsD listener for the tests (and the TOML writer they use, from helpers)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

from tests.helpers import write_toml

__all__ = ["UdpListener", "write_toml"]


class UdpListener:
    """A UDP socket on 127.0.0.1 collecting StatsD lines (one packet may hold several)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port: int = self.sock.getsockname()[1]
        self.lines: list[str] = []

    def __enter__(self) -> UdpListener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def drain(self) -> list[str]:
        """Read whatever has arrived (waiting up to 0.2 s for the first packet)."""
        timeout = 0.2
        while True:
            self.sock.settimeout(timeout)
            try:
                data = self.sock.recv(65535)
            except TimeoutError:
                return self.lines
            self.lines.extend(line for line in data.decode("ascii").split("\n") if line)
            timeout = 0.05

    def wait_for_lines(self, condition: Callable[[list[str]], bool], timeout: float = 90) -> list[str]:
        """Collect until `condition(lines)` holds; fail listing what did arrive."""
        deadline = time.monotonic() + timeout
        while True:
            lines = self.drain()
            if condition(lines):
                return lines
            if time.monotonic() > deadline:
                raise AssertionError(f"StatsD packets not seen within {timeout} s; got {sorted(set(lines))}")
