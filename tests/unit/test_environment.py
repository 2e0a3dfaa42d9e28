"""A mistyped DELAYED_* variable is named in a warning instead of being ignored silently."""

from __future__ import annotations

import logging

import pytest

from delayed.config import build_config, loading


def test_unknown_delayed_variables_are_warned_about_once(caplog: pytest.LogCaptureFixture) -> None:
    loading._warned_env.discard("DELAYED_MAX_CLAIM")
    environ = {"DELAYED_MAX_CLAIM": "3", "DELAYED_STATSD_HOST": "h", "DELAYED_TEST_ANYTHING": "x"}
    with caplog.at_level(logging.WARNING, logger="delayed.config"):
        config = build_config(environ=environ)
        build_config(environ=environ)
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == [
        "environment variable DELAYED_MAX_CLAIM is not a pydelayed setting and is ignored; "
        "did you mean DELAYED_MAX_CLAIMS?"
    ]
    assert config.max_claims == 5 and config.statsd.host == "h"
