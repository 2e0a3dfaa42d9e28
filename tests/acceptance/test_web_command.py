"""`delayed web` as an operator runs it: the refusal to serve an open address without
authentication (exit 2), bad addresses and half-set credentials (exit 2), and a real serve
with credentials from the environment that ends with status 0 on SIGTERM.
"""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

import delayed
from delayed.db import create_engine
from tests.helpers import delayed_cmd, subprocess_env

pytestmark = pytest.mark.slow

SECRET = "s3cr3t-Pw"


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_delayed_web_refuses_an_open_address_without_auth(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.sqlite3'}"
    env = subprocess_env(url)
    for bind in ("0.0.0.0:8080", "[::]:8080"):
        result = subprocess.run(
            delayed_cmd("web", "--bind", bind), env=env, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 2, result.stderr
        assert f"refusing to serve the dashboard on {bind} without authentication" in result.stderr
    bad = subprocess.run(
        delayed_cmd("web", "--bind", "nowhere"), env=env, capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 2 and "expected 'host:port'" in bad.stderr
    half = subprocess.run(
        delayed_cmd("web"),
        env={**env, "DELAYED_WEB_USERNAME": "ops"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert half.returncode == 2 and "password is not set" in half.stderr


def test_delayed_web_serves_with_credentials(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'serve.sqlite3'}"
    delayed.schema.migrate(create_engine(url))
    port = _free_port()
    env = subprocess_env(url, DELAYED_WEB_USERNAME="ops", DELAYED_WEB_PASSWORD=SECRET)
    # Auth is on, so a non-loopback bind is allowed; the test still only listens on loopback,
    # through 127.0.0.1 given as the bind (the refusal is what the test above checks).
    process = subprocess.Popen(
        delayed_cmd("web", "--bind", f"127.0.0.1:{port}"),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise AssertionError(
                        f"delayed web did not start: {process.stdout.read() if process.stdout else ''}"
                    ) from None
                time.sleep(0.1)
        assert response.status_code == 401
        assert httpx.get(f"http://127.0.0.1:{port}/", headers=basic("ops", SECRET)).status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert SECRET not in output
    assert os.environ.get("DELAYED_WEB_PASSWORD") is None  # the test did not leak it into this process
