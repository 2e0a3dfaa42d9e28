"""Every exception pydelayed raises on purpose, so callers can catch one family."""

from __future__ import annotations


class DelayedError(Exception):
    """Base class of pydelayed's own errors."""


class ConfigError(DelayedError):
    """A setting is unknown or has a bad value; the message names the file and the key."""


class JobDefinitionError(DelayedError, TypeError):
    """A job class that cannot be registered as written (async perform, a name already taken)."""


class SerializationError(DelayedError, TypeError):
    """A job argument cannot be stored as JSON; the message names the argument."""


class UnknownJobError(DelayedError, LookupError):
    """A job name in the table (or at enqueue) matches no registered job class."""


class HandlerError(DelayedError, ValueError):
    """A row's handler is not the JSON document pydelayed writes."""


class UnknownPriorityError(DelayedError, ValueError):
    """A priority name that is not one of the configured names."""


class EnqueueError(DelayedError):
    """The database refused or could not take an enqueue; no job was stored."""


class FencedError(DelayedError):
    """A worker that could not write its heartbeat for worker_timeout / 2 does not claim."""


class MaxRunTimeExceeded(DelayedError, TimeoutError):
    """An async job ran past its max_run_time and was cancelled on the worker's event loop."""
