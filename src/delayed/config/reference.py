"""conf/delayed.toml and docs/configuration.md, generated from the settings table.

    python -m delayed.config.reference --write     regenerate both files
    python -m delayed.config.reference --check     exit 1 when either is stale

A test runs the check, so a setting added to the table without regenerating fails the suite.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

from .table import SECTIONS, Section, Setting
from .values import kind_of

WIDTH = 92
RULE = "# " + "-" * 77

TOML_HEADER = """\
# pydelayed configuration: read by `delayed work -c FILE`, `delayed migrate -c FILE`,
# `delayed jobs ... -c FILE`, `delayed monitor -c FILE` and `delayed supervise -c FILE`
# (alias `delayed-supervisor`). Check a file with `delayed supervise --check -c FILE`.
#
# GENERATED from the settings table (src/delayed/config/sections.py) by
# `python -m delayed.config.reference --write`: edit the table, not this file.
#
# Durations are seconds (30, 1.5) or strings with a unit ("30s", "20m", "1.5h", "250ms").
# Precedence, lowest first: the defaults shown here, this file, the environment
# (DELAYED_DATABASE_URL, MAX_CLAIMS, QUEUES, ...), then command-line flags.
# A bad key or value stops the program with exit status 2 and a message naming this file
# and the key. Every table reads DELAYED_<TABLE>_<KEY> from the environment too
# (DELAYED_<KEY> for [delayed]); arrays of tables ([[pool]]) only from the file.
"""


def toml_value(value: Any) -> str:
    """A value as TOML text (inline tables for dicts)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{key} = {toml_value(item)}" for key, item in value.items()) + " }"
    raise TypeError(f"cannot write {value!r} as TOML")


def _comment(text: str) -> list[str]:
    return [f"# {line}" for line in textwrap.wrap(text, WIDTH - 2)]


def _setting_lines(section: Section, setting: Setting, value: Any, documented: bool = True) -> list[str]:
    lines: list[str] = []
    if documented:
        env = section.env_names(setting)
        flags = "/".join(setting.flags)
        extra = (f" Env: {', '.join(env)}." if env else "") + (f" Flag: {flags}." if flags else "")
        lines += _comment(setting.doc + extra)
    if value is None:
        if setting.example is None:
            raise ValueError(f"[{section.name}] {setting.name}: an unset default needs an example to show")
        lines.append(f"# {setting.name} = {toml_value(setting.example)}")
    else:
        lines.append(f"{setting.name} = {toml_value(value)}")
        if documented and setting.example is not None:
            lines.append(f"# {setting.name} = {toml_value(setting.example)}")
    return lines


def _section_lines(section: Section) -> list[str]:
    header = f"[[{section.name}]]" if section.array else f"[{section.name}]"
    lines = ["", f"{RULE[: len(RULE) - len(header) - 1]} {header}", *_comment(section.doc)]
    if not section.array:
        lines.append(header)
        for setting in section.settings.values():
            lines += _setting_lines(section, setting, setting.default)
        return lines
    for number, (note, table) in enumerate(section.examples):
        body = [header]
        for setting in section.settings.values():
            if setting.name in table:
                body += _setting_lines(section, setting, table[setting.name], documented=number == 0)
            elif number == 0:
                body += _setting_lines(section, setting, None)
        if section.examples_commented:
            body = [line if line.startswith("#") else f"# {line}" for line in body]
        lines += ["", *_comment(note), *body]
    return lines


def render_toml() -> str:
    """The whole of conf/delayed.toml."""
    lines = TOML_HEADER.rstrip("\n").split("\n")
    for section in SECTIONS.values():
        lines += _section_lines(section)
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown() -> str:
    """The whole of docs/configuration.md."""
    out = [
        "# Configuration reference",
        "",
        "Generated from the settings table (`src/delayed/config/sections.py`) by",
        "`python -m delayed.config.reference --write`; `conf/delayed.toml` is the same table as a",
        "commented example file. Precedence, lowest first: defaults, the file given with `-c`, the",
        "environment, command-line flags. Durations are seconds or strings with a unit (`30s`, `20m`,",
        "`1.5h`, `250ms`). A bad key or value exits with status 2 and names the file and the key.",
    ]
    for section in SECTIONS.values():
        header = f"[[{section.name}]]" if section.array else f"[{section.name}]"
        out += ["", f"## `{header}`", "", section.doc, ""]
        out += ["| key | kind | default | environment | flag | meaning |", "|---|---|---|---|---|---|"]
        for setting in section.settings.values():
            env = ", ".join(f"`{name}`" for name in section.env_names(setting))
            flags = ", ".join(f"`{flag}`" for flag in setting.flags)
            commands = f" ({', '.join(setting.commands)})" if setting.flags else ""
            default = "unset" if setting.default is None else f"`{toml_value(setting.default)}`"
            row = [f"`{setting.name}`", kind_of(setting.parse), default, env, flags + commands, setting.doc]
            out.append("| " + " | ".join(_cell(cell) for cell in row) + " |")
    return "\n".join(out) + "\n"


def targets(root: Path) -> dict[Path, str]:
    """Each generated file under the project root, with the text it should hold."""
    return {
        root / "conf" / "delayed.toml": render_toml(),
        root / "docs" / "configuration.md": render_markdown(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m delayed.config.reference", description=__doc__)
    parser.add_argument("--root", default=".", help="the project's root (default: the working directory)")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="regenerate the files")
    mode.add_argument("--check", action="store_true", help="exit 1 when a file is stale")
    args = parser.parse_args(argv)
    stale = []
    for path, text in targets(Path(args.root)).items():
        current = path.read_text() if path.exists() else None
        if current == text:
            continue
        if args.write:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path}")
        else:
            stale.append(path)
    for path in stale:
        print(f"{path} is stale: run python -m delayed.config.reference --write", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
