"""Value kinds: each turns what a file, a variable or a flag holds into a checked value.

A parser takes the raw value (a TOML value, or a string from the environment or a flag)
and returns the clean one, or raises ValueError with a message saying what was expected;
the loader adds the source and the key. Each parser carries a `kind`, the phrase the
generated reference uses for its type.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from ..schema import identifiers
from ..timeutil import to_seconds

Parser = Callable[[Any], Any]


def _kind(parse: Parser, kind: str) -> Parser:
    parse.kind = kind  # type: ignore[attr-defined]
    return parse


def kind_of(parse: Parser) -> str:
    """The phrase describing what `parse` accepts (for the generated reference)."""
    return str(getattr(parse, "kind", "value"))


def integer(minimum: int | None = None) -> Parser:
    """A whole number, at least `minimum`."""

    def parse(value: Any) -> int:
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer, got {value!r}")
        if minimum is not None and value < minimum:
            raise ValueError(f"must be at least {minimum}, got {value}")
        return value

    return _kind(parse, "integer" if minimum is None else f"integer >= {minimum}")


def optional(inner: Parser) -> Parser:
    """`inner`, or None for an absent value (an empty string from the environment counts)."""

    def parse(value: Any) -> Any:
        if value is None or (isinstance(value, str) and value.strip() == ""):
            return None
        return inner(value)

    return _kind(parse, f"{kind_of(inner)}, optional")


def duration(positive: bool = False) -> Parser:
    """Seconds: a number, a timedelta, or a string with a unit ("30s", "20m", "1.5h")."""

    def parse(value: Any) -> float:
        seconds = to_seconds(value)
        if positive and seconds <= 0:
            raise ValueError(f"must be more than 0 seconds, got {value!r}")
        return seconds

    return _kind(parse, "duration > 0" if positive else "duration")


def boolean(value: Any) -> bool:
    """true/false, or from the environment 1/0, yes/no, on/off."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"1", "true", "yes", "on"}:
        return True
    if isinstance(value, str) and value.strip().lower() in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def string(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    return value


def table_name(value: Any) -> str:
    """A plain identifier, optionally schema-qualified (`[A-Za-z_][A-Za-z0-9_]*` parts): the
    name reaches DDL and every query, so nothing else is accepted (schema/identifiers.py)."""
    return identifiers.table_name(value)


def log_level(value: Any) -> str:
    """A logging level name such as INFO; anything else is refused rather than ignored."""
    if not isinstance(value, str) or not isinstance(logging.getLevelName(value.strip().upper()), int):
        raise ValueError(f"expected a log level (DEBUG, INFO, WARNING, ERROR, CRITICAL), got {value!r}")
    return value.strip().upper()


def string_list(value: Any) -> list[str]:
    """A list of strings; from the environment or a flag, a comma-separated string."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
        return list(value)
    raise ValueError(f"expected a list of strings, got {value!r}")


def priority(value: Any) -> int | str:
    """A priority: a number, or a priority name resolved when it is used."""
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"expected a priority number or name, got {value!r}")
    return value


def priority_names(value: Any) -> dict[str, int]:
    """name = lower bound; one name must start at 0. Sorted by bound."""
    if not isinstance(value, Mapping) or not value:
        raise ValueError(f"expected a table of name = lower bound, got {value!r}")
    names = {}
    for key, bound in value.items():
        names[str(key)] = integer()(bound)
    if 0 not in names.values():
        raise ValueError("must include a name whose lower bound is 0")
    return dict(sorted(names.items(), key=lambda item: item[1]))


_ALERT_KEYS = ("age", "run_time", "attempts")


def priority_alerts(value: Any) -> dict[str, dict[str, float | int | None]]:
    """`name = {age = "1m", run_time = "30s", attempts = 3}`; `false` removes a threshold.

    Names are checked against `priority_names` where the thresholds are used
    (delayed.priority.alerts_for), since the two settings are parsed independently.
    """
    if not isinstance(value, Mapping):
        raise ValueError(
            f'expected a table of name = {{age = "1m", run_time = "30s", attempts = 3}}, got {value!r}'
        )
    parsed: dict[str, dict[str, float | int | None]] = {}
    for name, body in value.items():
        if not isinstance(body, Mapping):
            raise ValueError(f"{name}: expected a table with age, run_time and/or attempts, got {body!r}")
        entry: dict[str, float | int | None] = {}
        for key, raw in body.items():
            if key not in _ALERT_KEYS:
                raise ValueError(f"{name}: unknown key {key!r}; known keys: age, run_time, attempts")
            entry[key] = _threshold(name, key, raw)
        parsed[str(name)] = entry
    return parsed


def _threshold(name: str, key: str, raw: Any) -> float | int | None:
    if raw is False:
        return None
    if key == "attempts":
        if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
            raise ValueError(f"{name}.attempts: expected a whole number of attempts (or false), got {raw!r}")
        return raw
    try:
        return to_seconds(raw)
    except ValueError as exc:
        raise ValueError(f"{name}.{key}: {exc} (or false for none)") from None


def choice(*allowed: str) -> Parser:
    """One of a fixed set of strings; the error lists them."""

    def parse(value: Any) -> str:
        if not isinstance(value, str) or value not in allowed:
            raise ValueError(f"expected one of {', '.join(repr(a) for a in allowed)}, got {value!r}")
        return value

    return _kind(parse, "one of " + ", ".join(f'"{a}"' for a in allowed))


def sample_rate(value: Any) -> float:
    """A fraction above 0 and at most 1."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"expected a number between 0 and 1, got {value!r}")
    rate = float(value)
    if not 0 < rate <= 1:
        raise ValueError(f"expected a number above 0 and at most 1, got {value!r}")
    return rate


def import_path(value: Any) -> str:
    """'package.module:function', checked for shape here and imported where it is used."""
    if not isinstance(value, str) or value.count(":") != 1 or not all(value.split(":")):
        raise ValueError(f"expected 'module:function' (e.g. 'myapp.tracing:setup'), got {value!r}")
    return value.strip()


_kind(boolean, "boolean")
_kind(string, "string")
_kind(log_level, "log level")
_kind(string_list, "list of strings")
_kind(priority, "priority (number or name)")
_kind(priority_names, "table of name = lower bound")
_kind(priority_alerts, "table of name = {age, run_time, attempts}")
_kind(sample_rate, "number in (0, 1]")
_kind(import_path, '"module:function"')


def json_array(value: Any) -> list[Any]:
    """A list (TOML array); its items are checked for JSON where they are used (job arguments)."""
    if not isinstance(value, list | tuple):
        raise ValueError(f"expected an array, got {value!r}")
    return list(value)


def json_table(value: Any) -> dict[str, Any]:
    """A table of string keys (TOML inline table); values are checked where they are used."""
    if not isinstance(value, Mapping) or not all(isinstance(key, str) for key in value):
        raise ValueError(f"expected a table with string keys, got {value!r}")
    return dict(value)


_kind(json_array, "array (JSON values)")
_kind(json_table, "table (JSON values)")
