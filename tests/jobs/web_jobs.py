"""Job classes of the dashboard tests (tests/web_helpers.py, the web and Prometheus tests)."""

from __future__ import annotations

from typing import Any

import delayed


class Broken(delayed.Job, name="tests.web.broken"):
    """Fails every time, for good at the first attempt: a failed row made by a real worker."""

    max_attempts = 1

    def perform(self, to: str, **kwargs: Any) -> None:
        raise ConnectionError(f"SMTP refused {to} <script>alert('x')</script>\nsecond line")


class Later(delayed.Job, name="tests.web.later"):
    def perform(self, value: Any = None) -> None:
        pass
