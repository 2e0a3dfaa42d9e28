"""A real PgBouncer in transaction pooling mode in front of the test PostgreSQL, for the tests.

Each test session that asks for it starts one `pgbouncer` process on a free 127.0.0.1 port
(auth trust, ini and userlist in a temporary directory; as the postgres user when run as
root, since PgBouncer refuses root). Under CI a missing pgbouncer is a failure, locally a skip.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

_DEBIAN = "/usr/sbin/pgbouncer"  # not on a non-root PATH
PGBOUNCER = shutil.which("pgbouncer") or (_DEBIAN if os.path.exists(_DEBIAN) else None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PgBouncer:
    """One pgbouncer process; `url(pg_url)` is the same database through it."""

    def __init__(self, server_host: str, server_port: int) -> None:
        assert PGBOUNCER is not None
        # Directly under /tmp: the postgres user (PgBouncer refuses to run as root) must reach it.
        self.directory = directory = Path(tempfile.mkdtemp(prefix="pyd-pgbouncer-"))
        self.port = free_port()
        (directory / "userlist.txt").write_text('"postgres" ""\n')
        ini = directory / "pgbouncer.ini"
        ini.write_text(
            "[databases]\n"
            f"* = host={server_host} port={server_port}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {directory / 'userlist.txt'}\n"
            "pool_mode = transaction\n"
            "max_client_conn = 500\n"
            "default_pool_size = 20\n"
            "ignore_startup_parameters = extra_float_digits,options\n"
            f"logfile = {directory / 'pgbouncer.log'}\n"
        )
        args = [PGBOUNCER, str(ini)]
        if os.geteuid() == 0:
            shutil.chown(directory, "postgres")
            for path in directory.iterdir():
                shutil.chown(path, "postgres")
            args = [PGBOUNCER, "-u", "postgres", str(ini)]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pgbouncer exited with {self.proc.returncode}: {self.log()[-2000:]}")
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"pgbouncer did not listen on {self.port}: {self.log()[-2000:]}")

    def log(self) -> str:
        path = self.directory / "pgbouncer.log"
        return path.read_text() if path.exists() else ""

    def url(self, pg_url: str) -> str:
        """`pg_url`'s database through this PgBouncer."""
        return sa.make_url(pg_url).set(host="127.0.0.1", port=self.port).render_as_string(hide_password=False)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        shutil.rmtree(self.directory, ignore_errors=True)
