"""Import the user's job modules (`require`), so their classes are in the registry."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterable

from .errors import ConfigError


def import_modules(names: Iterable[str]) -> None:
    """Import each module; the working directory is importable, as with `python -m`."""
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ConfigError(
                f"require: cannot import module {name!r}: {exc}. "
                "Check the module name and that it is on PYTHONPATH (or in the working directory)."
            ) from exc
