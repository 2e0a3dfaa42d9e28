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
        except Exception as exc:  # the module itself raised while importing
            where = _raised_at(exc)
            raise ConfigError(
                f"require: importing module {name!r} failed: {type(exc).__name__}: {exc}{where}. "
                "Fix the module (run `python -c 'import "
                f"{name}'` to see the traceback)."
            ) from exc


def _raised_at(exc: BaseException) -> str:
    """' (at file.py:12)': where the import failed, the innermost frame of the traceback."""
    tb = exc.__traceback__
    if tb is None:
        return ""
    while tb.tb_next is not None:
        tb = tb.tb_next
    return f" (at {os.path.basename(tb.tb_frame.f_code.co_filename)}:{tb.tb_lineno})"
