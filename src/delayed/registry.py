"""The job registry: registered name -> Job class. Only what is registered here may run.

A leaf module (it knows job classes only as types), so the job API, the executor, the retry
policy and the operator API can all look names up without importing each other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import UnknownJobError

if TYPE_CHECKING:  # typing only: job.py imports this module
    from .job import Job

_registry: dict[str, type[Job]] = {}


def register(name: str, cls: type[Job]) -> None:
    """Record `cls` under `name` (Job.__init_subclass__ calls this)."""
    _registry[name] = cls


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
