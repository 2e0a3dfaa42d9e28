"""`[web]`: the dashboard's settings, declared where every `delayed` process reads its config.

Importing this module only declares the section (no Starlette needed), so a delayed.toml
with a `[web]` table is accepted by `delayed work` and the supervisor too. Every key can
also come from the environment as DELAYED_WEB_<KEY> (DELAYED_WEB_PASSWORD keeps the
password out of the file).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..config import (
    BOOL,
    DURATION,
    INT,
    OPTIONAL,
    STR,
    Config,
    Setting,
    declare_section,
)
from ..errors import ConfigError


def parse_bind(value: Any) -> str:
    """'host:port' (IPv6 as '[::1]:8080'); checked here, resolved when serving."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected 'host:port' such as '127.0.0.1:8080', got {value!r}")
    split_address(value)
    return value.strip()


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


def _import_path(value: Any) -> str:
    if not isinstance(value, str) or value.count(":") != 1 or not all(value.split(":")):
        raise ValueError(f"expected 'module:function' (e.g. 'myapp.auth:check'), got {value!r}")
    return value.strip()


def _page_size(value: Any) -> int:
    size = INT(1)(value)
    if size > 500:
        raise ValueError(f"must be at most 500 (a page is read in one query), got {size}")
    return size


def _refresh(value: Any) -> float:
    seconds = DURATION()(value)
    if 0 < seconds < 1:
        raise ValueError(f"must be 0 (off) or at least 1 second, got {value!r}")
    return seconds


SECTION = declare_section(
    "web",
    [
        Setting("bind", parse_bind, "127.0.0.1:8080", "Address `delayed web` listens on ('host:port')."),
        Setting("username", OPTIONAL(STR), None, "HTTP Basic user name (needs password too)."),
        Setting(
            "password",
            OPTIONAL(STR),
            None,
            "HTTP Basic password; prefer the environment (DELAYED_WEB_PASSWORD). Never logged.",
        ),
        Setting(
            "auth",
            OPTIONAL(_import_path),
            None,
            "'module:function' called with each request: true (or a user name) lets it in, "
            "false answers 403, a Response is sent as is. Replaces username/password.",
        ),
        Setting("read_only", BOOL, False, "Hide every action and refuse action POSTs (403)."),
        Setting("refresh", _refresh, 10.0, "Seconds between automatic page reloads (0: never)."),
        Setting("page_size", _page_size, 50, "Jobs per page (1-500)."),
        Setting(
            "sample_interval",
            DURATION(),
            15.0,
            "Seconds between the overview's counts (one monitor query set, shared with /metrics); "
            "0: only when a page asks, cached that long.",
        ),
        Setting("history", DURATION(positive=True), 3600.0, "How far back the overview's charts reach."),
        Setting(
            "secret_key",
            OPTIONAL(STR),
            None,
            "Key signing CSRF tokens; unset: random per process (set it when several processes "
            "serve the dashboard behind one address).",
        ),
        Setting("metrics", BOOL, True, "Serve Prometheus metrics at /metrics (same auth as the pages)."),
    ],
)


Auth = Callable[[Any], Any]


@dataclass(frozen=True)
class WebSettings:
    """The resolved `[web]` section, cross-checked (username and password come together)."""

    bind: str
    username: str | None
    password: str | None
    auth: str | None
    read_only: bool
    refresh: float
    page_size: int
    sample_interval: float
    history: float
    secret_key: str | None
    metrics: bool

    def __repr__(self) -> str:  # never print the password or the key
        return f"WebSettings(bind={self.bind!r}, username={self.username!r}, read_only={self.read_only})"

    @property
    def basic_auth(self) -> bool:
        return bool(self.username and self.password)


def web_settings(config: Config, **overrides: Any) -> WebSettings:
    """`[web]` of `config`, with keyword overrides (None = keep), checked as a whole."""
    values = dict(config.section("web"))
    for key, value in overrides.items():
        if value is None:
            continue
        try:
            values[key] = SECTION.settings[key].parse(value)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"[web] {key}: {exc}") from None
    if bool(values["username"]) != bool(values["password"]):
        missing = "password" if values["username"] else "username"
        raise ConfigError(
            f"{config.source}: [web] username and password go together; {missing} is not set "
            f"(set it, or DELAYED_WEB_{missing.upper()})"
        )
    return WebSettings(**values)


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
