"""The one place the dashboard and the Prometheus exporter import the operator API and the
monitor from, so that moving them again is a one-line change here.
"""

from __future__ import annotations

from .. import admin
from ..monitor import Monitor

__all__ = ["Monitor", "admin"]
