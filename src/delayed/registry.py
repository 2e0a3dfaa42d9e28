"""The job registry: registered name -> Job class. Only what is registered here may run.

A leaf module (it knows job classes only as types), so the job API, the executor, the retry
policy and the operator API can all look names up without importing each other.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from .errors import JobDefinitionError, UnknownJobError

if TYPE_CHECKING:  # typing only: job.py imports this module
    from .job import Job

_registry: dict[str, type[Job]] = {}
_origins: dict[str, str] = {}  # name -> `module.QualName` of the class registered under it
_async_names: tuple[str, ...] | None = None  # made on demand, forgotten on every register


def register(name: str, cls: type[Job], origin: str | None = None) -> None:
    """Record `cls` under `name` (Job.__init_subclass__ calls this).

    `origin` is where the class is defined, `module.QualName` (job.py resolves a script's
    `__main__` to its module name). A class of the same origin replaces the registered one:
    that is the same class defined again (importlib.reload, a re-run notebook cell). Any
    other class is refused: it would silently take over every queued job of the first.
    That includes one module file imported under two module names (`jobs` and `app.jobs`),
    whose two copies of each class and of the module's state are not the same.
    """
    origin = origin or f"{cls.__module__}.{cls.__qualname__}"
    registered = _registry.get(name)
    if registered is not None and registered is not cls and _origins[name] != origin:
        raise JobDefinitionError(_duplicate_message(name, registered, _origins[name], cls, origin))
    global _async_names
    _registry[name] = cls
    _origins[name] = origin
    _async_names = None


def _duplicate_message(name: str, first: type, first_origin: str, second: type, second_origin: str) -> str:
    message = (
        f"job name {name!r} is already taken by {first_origin}; {second_origin} cannot be "
        "registered under it too (its queued jobs would run the new class). Give one of them "
        'another name: class X(delayed.Job, name="...")'
    )
    first_file, second_file = _file_of(first), _file_of(second)
    if first_file is not None and first_file == second_file:
        message += (
            f". Both come from {first_file}: that file is imported under two module names "
            f"({first.__module__} and {second.__module__}); import it one way only (check "
            "sys.path / PYTHONPATH and the `require` setting)"
        )
    return message


def _file_of(cls: type) -> str | None:
    return getattr(sys.modules.get(cls.__module__), "__file__", None)


def registered_jobs() -> dict[str, type[Job]]:
    """A copy of the registry: registered name -> class."""
    return dict(_registry)


def lookup(name: str) -> type[Job]:
    """The job class registered as `name`, or UnknownJobError saying how to register it."""
    try:
        return _registry[name]
    except KeyError:
        raise UnknownJobError(
            f"no job class is registered as {name!r}; import the module that defines it "
            "(add it to `require` in [delayed] or pass --require)"
        ) from None


def find(name: str) -> type[Job] | None:
    """The job class registered as `name`, or None."""
    return _registry.get(name)


def async_names() -> tuple[str, ...]:
    """The registered names whose class has an `async def perform` (sorted; cached).

    The worker claims these for its event loop and every other name for its threads
    (delayed.worker), so a lane never gets a row it cannot run.
    """
    global _async_names
    names = _async_names
    if names is None:
        names = _async_names = tuple(sorted(n for n, c in _registry.items() if getattr(c, "is_async", False)))
    return names
