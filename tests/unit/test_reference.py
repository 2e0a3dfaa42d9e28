"""The generated files follow the settings table: a setting added without regenerating fails here."""

from __future__ import annotations

from delayed.config import SECTIONS, build_config
from delayed.config.reference import render_markdown, render_toml, targets
from tests.helpers import ROOT


def test_generated_files_are_current() -> None:
    stale = [str(path) for path, text in targets(ROOT).items() if path.read_text() != text]
    assert stale == [], f"stale: {stale}; run `python -m delayed.config.reference --write`"


def test_every_setting_is_in_both_files() -> None:
    toml, markdown = render_toml(), render_markdown()
    for section in SECTIONS.values():
        for key in section.settings:
            assert f"{key} =" in toml, f"[{section.name}] {key} missing from conf/delayed.toml"
            assert f"| `{key}` |" in markdown, f"[{section.name}] {key} missing from docs/configuration.md"


def test_the_generated_example_parses_to_its_defaults(tmp_path) -> None:
    path = tmp_path / "delayed.toml"
    path.write_text(render_toml())
    config = build_config(path, environ={})
    assert config.max_claims == 5 and config.supervisor.workers == 2
    assert [pool.name for pool in config.pools] == ["interactive", "default"]
