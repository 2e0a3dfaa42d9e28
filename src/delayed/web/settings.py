"""`[web]`: the dashboard's settings, declared where every `delayed` process reads its config.

Importing this module only declares the section (no Starlette needed), so a delayed.toml
with a `[web]` table is accepted by `delayed work` and the supervisor too. Every key can
also come from the environment as DELAYED_WEB_<KEY> (DELAYED_WEB_PASSWORD keeps the
password out of the file).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import socket
from dataclasses import dataclass
from typing import Any

from ..config import SECTIONS, Config, section, setting
from ..config import values as v
from ..config.table import parse_value
from ..errors import ConfigError


def parse_bind(value: Any) -> str:
    """'host:port' (IPv6 as '[::1]:8080'); checked here, resolved when serving."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected 'host:port' such as '127.0.0.1:8080', got {value!r}")
    split_address(value)
    return value.strip()


v._kind(parse_bind, '"host:port"')


def split_address(value: str) -> tuple[str, int]:
    """('127.0.0.1', 8080) from '127.0.0.1:8080'; ValueError naming the value otherwise."""
    text = value.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"expected 'host:port' such as '127.0.0.1:8080', got {value!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"write an IPv6 address in brackets, e.g. '[::1]:8080', got {value!r}")
    port = int(port_text)
    if not 0 < port < 65536:
        raise ValueError(f"port must be 1-65535, got {port} in {value!r}")
    return host, port


def _page_size(value: Any) -> int:
    size = v.integer(1)(value)
    if size > 500:
        raise ValueError(f"must be at most 500 (a page is read in one query), got {size}")
    return size


v._kind(_page_size, "integer 1-500")


def _refresh(value: Any) -> float:
    seconds = v.duration()(value)
    if 0 < seconds < 1:
        raise ValueError(f"must be 0 (off) or at least 1 second, got {value!r}")
    return seconds


v._kind(_refresh, "duration (0, or 1 s or more)")


@section(
    "web",
    "`delayed web` and `delayed.web.create_app()`: the dashboard (pip install 'pydelayed[web]'). "
    "docs/web.md describes the pages, actions and security.",
)
@dataclass(frozen=True)
class WebSettings:
    """`[web]`, cross-checked by `web_settings` (username and password come together)."""

    bind: str = setting(
        "127.0.0.1:8080",
        parse_bind,
        "Address `delayed web` listens on. A non-loopback address needs username/password or auth.",
        flags=("--bind",),
        commands=("web",),
    )
    username: str | None = setting(
        None, v.optional(v.string), "HTTP Basic user name (needs password too).", example="ops"
    )
    password: str | None = setting(
        None,
        v.optional(v.string),
        "HTTP Basic password; prefer the environment (DELAYED_WEB_PASSWORD). Never logged or shown.",
        example="use DELAYED_WEB_PASSWORD",
    )
    auth: str | None = setting(
        None,
        v.optional(v.import_path),
        '"module:function" called with each request: true (or a user name) lets it in, false '
        "answers 403, a Starlette Response is sent as is. Replaces username/password.",
        example="myapp.auth:staff_only",
    )
    read_only: bool = setting(False, v.boolean, "Hide every action and refuse action POSTs (403).")
    refresh: float = setting(10.0, _refresh, "Seconds between automatic page reloads (0: never).")
    page_size: int = setting(50, _page_size, "Jobs per page.")
    sample_interval: float = setting(
        15.0,
        v.duration(),
        "Seconds between the overview's counts (the monitor's queries, shared with /metrics), run in "
        "a background thread; a sample that took t seconds waits at least 10 t. 0: only when a page "
        "asks, cached [prometheus] cache seconds.",
    )
    history: float = setting(3600.0, v.duration(positive=True), "How far back the overview's charts reach.")
    secret_key: str | None = setting(
        None,
        v.optional(v.string),
        "Key signing the CSRF tokens; unset: random per process (set it when several processes "
        "serve the dashboard behind one address).",
        example="a long random string",
    )
    metrics: bool = setting(True, v.boolean, "Serve Prometheus metrics at /metrics (same auth as the pages).")

    def __repr__(self) -> str:  # never print the password or the key
        return f"WebSettings(bind={self.bind!r}, username={self.username!r}, read_only={self.read_only})"

    @property
    def basic_auth(self) -> bool:
        return bool(self.username and self.password)


def web_settings(config: Config, **overrides: Any) -> WebSettings:
    """`[web]` of `config`, with keyword overrides (None = keep), checked as a whole."""
    current: WebSettings = config.section("web")
    given = {
        key: parse_value(SECTIONS["web"], key, value, "arguments")
        for key, value in overrides.items()
        if value is not None
    }
    settings = dataclasses.replace(current, **given)
    if bool(settings.username) != bool(settings.password):
        missing = "password" if settings.username else "username"
        raise ConfigError(
            f"{config.source}: [web] username and password go together; {missing} is not set "
            f"(set it, or DELAYED_WEB_{missing.upper()})"
        )
    return settings


def is_loopback(host: str) -> bool:
    """True when every address `host` resolves to is a loopback address (127/8, ::1)."""
    if host in ("", "0.0.0.0", "::", "*"):
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    addresses = {info[4][0] for info in infos}
    return bool(addresses) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses)
