"""Serving the dashboard for real (uvicorn on 127.0.0.1) and driving it with real Chromium."""

from __future__ import annotations

import html
import re
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

import delayed
from tests.jobs.web_jobs import Broken, Later

__all__ = ["Broken", "Later", "chromium", "client", "csrf_token", "fail_jobs", "flash", "row_ids", "serve"]

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# Without these, Chromium waits on network services this closed network does not have.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,1000",
)


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Run `app` with uvicorn on 127.0.0.1 (a free port) in a thread; yields the base URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise AssertionError("uvicorn did not start within 20 s")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()


def csrf_token(page_html: str) -> str:
    """The CSRF token of the first form on a page."""
    found = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page_html)
    assert found, "the page has no CSRF token"
    return found.group(1)


def row_ids(page_html: str) -> list[int]:
    """The job ids listed in a jobs page's table, in order."""
    return [int(i) for i in re.findall(r'<tr id="job-(\d+)"', page_html)]


def flash(page_html: str) -> str | None:
    found = re.search(r'<p class="flash" id="flash" role="status">(.*?)</p>', page_html, re.S)
    return html.unescape(found.group(1)) if found else None


def client(base: str, **kwargs: Any) -> httpx.Client:
    return httpx.Client(base_url=base, follow_redirects=False, timeout=30, **kwargs)


def chromium_available() -> bool:
    return shutil.which("chromium") is not None and shutil.which("chromedriver") is not None


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium driven by Debian's chromedriver (Selenium; nothing downloaded)."""
    if not chromium_available():
        pytest.skip(
            "chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="pyd-chromium-")
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def fail_jobs(queue: str, count: int, **kwargs: Any) -> list[int]:
    """Enqueue `count` Broken jobs on `queue` and let a real worker fail them for good."""
    ids = delayed.enqueue_many(
        [Broken.set(queue=queue).build(f"user{i}@example.com", **kwargs) for i in range(count)]
    )
    succeeded, failed = delayed.Worker(queues=[queue], sleep_delay=0.1).work_off(count)
    assert (succeeded, failed) == (0, count)
    return ids
