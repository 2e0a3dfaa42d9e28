"""An inverted priority range (min above max) matches no job: refused wherever it comes from."""

from __future__ import annotations

from pathlib import Path

import pytest

from delayed.config import build_config
from delayed.errors import ConfigError
from delayed.worker import Worker


def _refused(**kwargs) -> str:
    with pytest.raises(ConfigError) as caught:
        build_config(**kwargs)
    return str(caught.value)


def test_names_from_overrides_are_refused_naming_both_bounds() -> None:
    message = _refused(environ={}, overrides={"min_priority": "reporting", "max_priority": "interactive"})
    assert "min_priority 'reporting' (= 30, from arguments)" in message
    assert "max_priority 'interactive' (= 0, from arguments)" in message
    assert "no job could ever be picked up" in message


def test_numbers_from_the_environment_are_refused_naming_the_variables() -> None:
    message = _refused(environ={"MIN_PRIORITY": "20", "DELAYED_MAX_PRIORITY": "10"})
    assert "min_priority 20 (from environment variable MIN_PRIORITY)" in message
    assert "max_priority 10 (from environment variable DELAYED_MAX_PRIORITY)" in message


def test_a_file_range_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "delayed.toml"
    path.write_text('[delayed]\nmin_priority = "eventual"\nmax_priority = 19\n')
    message = _refused(path=path, environ={})
    assert f"min_priority 'eventual' (= 20, from {path} [delayed])" in message
    assert f"max_priority 19 (from {path} [delayed])" in message


def test_layers_mix_file_and_environment(tmp_path: Path) -> None:
    path = tmp_path / "delayed.toml"
    path.write_text("[delayed]\nmax_priority = 5\n")
    message = _refused(path=path, environ={"MIN_PRIORITY": "user_visible"})
    assert "'user_visible' (= 10, from environment variable MIN_PRIORITY)" in message
    assert f"max_priority 5 (from {path} [delayed])" in message


def test_equal_bounds_and_open_ranges_are_fine() -> None:
    assert (
        build_config(environ={}, overrides={"min_priority": 10, "max_priority": "user_visible"}).min_priority
        == 10
    )
    assert build_config(environ={}, overrides={"min_priority": "reporting"}).max_priority is None


def test_custom_priority_names_are_used(tmp_path: Path) -> None:
    path = tmp_path / "delayed.toml"
    path.write_text(
        '[delayed]\npriority_names = { now = 0, later = 50 }\nmin_priority = "later"\nmax_priority = 49\n'
    )
    assert "'later' (= 50" in _refused(path=path, environ={})


def test_a_pool_range_is_refused_with_its_own_bounds_or_the_ones_it_falls_back_to(tmp_path: Path) -> None:
    own = tmp_path / "own.toml"
    own.write_text('[[pool]]\nname = "fast"\nmin_priority = 5\nmax_priority = 4\n')
    message = _refused(path=own, environ={})
    assert f"[[pool]] #1 (fast) min_priority 5 (from {own} [[pool]] #1 (fast))" in message
    fallback = tmp_path / "fallback.toml"
    fallback.write_text(
        '[delayed]\nmin_priority = 20\n[[pool]]\nname = "a"\n[[pool]]\nmax_priority = "user_visible"\n'
    )
    message = _refused(path=fallback, environ={})
    assert message.startswith("[[pool]] #2 min_priority 20 (from ")
    assert "as the pool sets none" in message and "'user_visible' (= 10" in message


def test_a_worker_built_in_code_refuses_it_too() -> None:
    with pytest.raises(ConfigError, match=r"min_priority 'reporting' \(= 30, from arguments\) is above"):
        Worker(min_priority="reporting", max_priority="interactive", config=build_config(environ={}))
