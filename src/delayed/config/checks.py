"""Checks across settings: what no single setting's parser can see.

A priority range whose lower bound is above its upper bound matches no job: a worker (or a
pool's children) would start, claim nothing, ever, and say nothing. It is refused when the
config is built (file, environment and flags together, and each [[pool]] with what it falls
back to), so `delayed work`, `delayed supervise` (and `--check`) exit 2 naming both bounds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..errors import ConfigError
from ..schema.identifiers import check_length

Origin = Callable[[str], str]  # setting name -> where its value came from (for messages)


def check_priority_ranges(config: Any, origin: Origin, pool_source: str | None = None) -> None:
    """Refuse an inverted range in [delayed] and in every [[pool]] (with its fallbacks).

    `origin(key)` names where a [delayed] value came from; `pool_source` is the file the
    [[pool]] tables were read from. Unknown names are left to the check that names them.
    """
    names = config.priority_names
    check_range(
        config.min_priority,
        config.max_priority,
        names,
        "[delayed]",
        origin("min_priority"),
        origin("max_priority"),
    )
    for number, pool in enumerate(config.pools, start=1):
        where = f"[[pool]] #{number}" + (f" ({pool.name})" if pool.name else "")
        low, low_from = pool.min_priority, f"{pool_source} {where}"
        if low is None:
            low, low_from = config.min_priority, f"{origin('min_priority')}, as the pool sets none"
        high, high_from = pool.max_priority, f"{pool_source} {where}"
        if high is None:
            high, high_from = config.max_priority, f"{origin('max_priority')}, as the pool sets none"
        check_range(low, high, names, where, low_from, high_from)


def check_range(
    low: int | str | None,
    high: int | str | None,
    names: Mapping[str, int],
    where: str,
    low_from: str,
    high_from: str,
) -> None:
    """ConfigError when both bounds are set and min_priority is above max_priority."""
    low_number, high_number = _number(low, names), _number(high, names)
    if low_number is None or high_number is None or low_number <= high_number:
        return
    raise ConfigError(
        f"{where} min_priority {_show(low, low_number, low_from)} is above max_priority "
        f"{_show(high, high_number, high_from)}: no job could ever be picked up. A lower number "
        "is more urgent; swap the two bounds, or unset one"
    )


def _number(value: int | str | None, names: Mapping[str, int]) -> int | None:
    if value is None or isinstance(value, int):
        return value
    return names.get(value)


def _show(value: int | str, number: int, origin: str) -> str:
    if isinstance(value, str):
        return f"{value!r} (= {number}, from {origin})"
    return f"{number} (from {origin})"


_DIALECT_OF_SCHEME = {
    "postgres": "postgresql",
    "postgresql": "postgresql",
    "mariadb": "mysql",
    "mysql": "mysql",
}


def check_table_name(config: Any, origin: Origin) -> None:
    """Refuse a table_name too long for the configured database's identifiers (the syntax is
    checked by its parser): PostgreSQL would silently truncate the derived index names."""
    scheme = str(config.database_url).split(":", 1)[0].split("+", 1)[0].lower()
    problem = check_length(config.table_name, _DIALECT_OF_SCHEME.get(scheme, scheme))
    if problem is not None:
        raise ConfigError(f"table_name {config.table_name!r} ({origin('table_name')}): {problem}")
