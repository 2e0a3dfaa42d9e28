"""Named priority ranges: a lower number is picked up first.

Names map to lower bounds (defaults: interactive 0, user_visible 10, eventual 20,
reporting 30); each range runs to the next bound and the last is open. Unlike the Ruby
gem, an unknown name is an error at enqueue, never a silent 0.
"""

from __future__ import annotations

from collections.abc import Mapping

from .errors import UnknownPriorityError


def resolve(value: int | str, names: Mapping[str, int]) -> int:
    """A priority number from a number or a configured name."""
    if isinstance(value, bool):
        raise UnknownPriorityError(f"priority must be a number or a name, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        if value in names:
            return names[value]
        known = ", ".join(f"{n} ({b})" for n, b in names.items())
        raise UnknownPriorityError(f"unknown priority name {value!r}; known names: {known}")
    raise UnknownPriorityError(f"priority must be a number or a name, got {value!r}")


def name_of(priority: int, names: Mapping[str, int]) -> str | None:
    """The name of the range holding `priority`; None below the lowest bound (negative)."""
    found = None
    for name, bound in sorted(names.items(), key=lambda item: item[1]):
        if priority >= bound:
            found = name
    return found
