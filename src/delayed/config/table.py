"""The settings table: how a setting and a section are declared.

A section is a frozen dataclass whose fields are declared with `setting(...)`: the field's
type and default are the typed view code reads (`config.supervisor.graceful_timeout`), and
the metadata says how to parse it, its documentation, its environment names and its CLI
flags. From this one declaration come the TOML file's parsing, the environment, the CLI
options (delayed.cli.options), conf/delayed.toml and docs/configuration.md
(delayed.config.reference). Adding a setting is one edit.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..errors import ConfigError
from .values import Parser

T = TypeVar("T")


@dataclass(frozen=True)
class Setting:
    """One setting: its parser, default, documentation, environment names and CLI flags.

    `flags` are the command-line spellings (`--max-claims`), offered by the `commands`
    named; a list setting's flag may be repeated and takes comma-separated values.
    `example`, when given, is shown in conf/delayed.toml as a commented alternative.
    """

    name: str
    parse: Parser
    default: Any
    doc: str
    env: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()
    commands: tuple[str, ...] = ()
    example: Any = None


@dataclass
class Section:
    """A TOML table (`[name]`) or, with `array`, an array of tables (`[[name]]`)."""

    name: str
    cls: type
    settings: dict[str, Setting]
    doc: str
    array: bool = False
    examples: tuple[tuple[str, dict[str, Any]], ...] = ()
    # Show the examples commented out in conf/delayed.toml (they name things, such as job
    # classes, that a real file must provide), so the example file stays loadable.
    examples_commented: bool = False

    @property
    def env_prefix(self) -> str | None:
        """`DELAYED_` for [delayed], `DELAYED_<NAME>_` for other tables, None for arrays."""
        if self.array:
            return None
        return "DELAYED_" if self.name == "delayed" else f"DELAYED_{self.name.upper()}_"

    def env_names(self, setting: Setting) -> tuple[str, ...]:
        """Every environment variable that sets `setting`, the generic name first."""
        prefix = self.env_prefix
        if prefix is None:
            return setting.env
        generic = prefix + setting.name.upper()
        return (generic, *(name for name in setting.env if name != generic))

    def defaults(self) -> Any:
        return self.cls()


SECTIONS: dict[str, Section] = {}


def setting(
    default: Any,
    parse: Parser,
    doc: str,
    *,
    env: tuple[str, ...] = (),
    flags: tuple[str, ...] = (),
    commands: tuple[str, ...] = (),
    example: Any = None,
) -> Any:
    """A dataclass field declaring a setting (its name is the field's)."""
    spec = Setting("", parse, default, doc, env, flags, commands, example)
    metadata = {"setting": spec}
    if isinstance(default, list | dict):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def section(
    name: str,
    doc: str,
    *,
    array: bool = False,
    examples: tuple[tuple[str, dict[str, Any]], ...] = (),
    examples_commented: bool = False,
) -> Callable[[type[T]], type[T]]:
    """Register a frozen dataclass of `setting(...)` fields as the config section `name`."""

    def register(cls: type[T]) -> type[T]:
        settings = {}
        for item in dataclasses.fields(cls):  # type: ignore[arg-type]
            spec = item.metadata.get("setting")
            if spec is not None:
                settings[item.name] = dataclasses.replace(spec, name=item.name)
        SECTIONS[name] = Section(name, cls, settings, doc, array, examples, examples_commented)
        return cls

    return register


def values_of(instance: Any) -> dict[str, Any]:
    """A section instance's settings as a plain dict (for printing and comparing)."""
    return {item.name: getattr(instance, item.name) for item in dataclasses.fields(instance)}


def parse_value(section: Section, key: str, value: Any, source: str) -> Any:
    """`value` parsed by the setting `key` of `section`; a ConfigError names source and key."""
    setting_ = section.settings.get(key)
    if setting_ is None:
        known = ", ".join(sorted(section.settings))
        raise ConfigError(f"{source}: [{section.name}] unknown key {key!r}; known keys: {known}")
    try:
        return setting_.parse(value)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{source}: [{section.name}] {key}: {exc}") from None


def parse_mapping(section: Section, raw: Mapping[str, Any], source: str) -> dict[str, Any]:
    return {key: parse_value(section, key, value, source) for key, value in raw.items()}
