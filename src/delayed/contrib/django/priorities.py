"""Django's task priority (-100..100, higher runs first) and pydelayed's (lower runs first).

A Django priority is stored negated: Django 100 -> -100 (before `interactive`), 0 -> 0
(`interactive`), -10 -> 10 (`user_visible`), -100 -> 100 (after `reporting`).
"""

from __future__ import annotations

_DJANGO_MIN, _DJANGO_MAX = -100, 100


def to_delayed_priority(priority: int) -> int:
    """Django's priority (higher runs first) as pydelayed's (lower runs first)."""
    return -int(priority)


def to_django_priority(priority: int) -> int:
    """A row's pydelayed priority as Django's, clamped to Django's -100..100."""
    return max(_DJANGO_MIN, min(_DJANGO_MAX, -int(priority)))
