"""A database host that accepts connections and never answers (a hung server, a half-open
path): a worker stays responsive to SIGTERM, because every wait on its own connections is
bounded by connect_timeout / network_timeout.

The endpoint is a listening socket in this test process (127.0.0.1) that accepts and never
sends a byte. Before: the PostgreSQL connect (no connect_timeout) and the MySQL handshake (no
read timeout) blocked for ever, with SIGTERM noted but never acted on.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import start_delayed, subprocess_env, wait_for

pytestmark = pytest.mark.slow


class SilentServer:
    """Accepts TCP connections on 127.0.0.1 and never answers (keeps them open)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.sock.accept()
                self.accepted.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.accepted:
            conn.close()


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


URLS = {
    "postgresql": "postgresql://postgres@127.0.0.1:{port}/test",
    "mysql": "mysql://root@127.0.0.1:{port}/test",
}
TIMEOUT_TEXT = {"postgresql": "timeout expired", "mysql": "timed out"}


@pytest.mark.parametrize("backend", sorted(URLS))
def test_a_worker_on_a_silent_database_host_exits_on_sigterm(
    silent: SilentServer, backend: str, tmp_path: Path
) -> None:
    log = tmp_path / "worker.log"
    env = subprocess_env(
        URLS[backend].format(port=silent.port), DELAYED_CONNECT_TIMEOUT="2", DELAYED_NETWORK_TIMEOUT="3"
    )
    proc = start_delayed("work", "--require", "sample_jobs", env=env, log=log)
    try:
        # Past the start-up schema check (its connects time out too), inside a connect again:
        wait_for(lambda: "Starting worker" in log.read_text(), timeout=60)
        started = len(silent.accepted)
        wait_for(lambda: len(silent.accepted) > started, timeout=60)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)  # before: never
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert code == 0, text
    assert "SIGTERM received" in text
    # The connect it was in (the registry's heartbeat or the claim) ended at its timeout:
    bounded = "Error while reserving jobs (attempt 1)" in text or "heartbeat failed" in text
    assert bounded and TIMEOUT_TEXT[backend] in text.lower(), text


@pytest.mark.parametrize("backend", sorted(URLS))
def test_a_worker_on_a_silent_host_keeps_retrying_with_back_off(
    silent: SilentServer, backend: str, tmp_path: Path
) -> None:
    """Each attempt ends after connect_timeout and is retried: the loop is never stuck."""
    log = tmp_path / "worker.log"
    env = subprocess_env(
        URLS[backend].format(port=silent.port), DELAYED_CONNECT_TIMEOUT="2", DELAYED_NETWORK_TIMEOUT="3"
    )
    proc = start_delayed("work", "--require", "sample_jobs", env=env, log=log)
    try:
        wait_for(lambda: "Error while reserving jobs (attempt 3)" in log.read_text(), timeout=90)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
