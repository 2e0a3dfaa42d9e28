"""`Wakeup`: a stop flag that a signal handler may set.

A signal handler runs in the main thread between two bytecodes of whatever it was doing.
`threading.Event.set()` takes the Event's internal lock, and the interrupted main thread
may be holding that very lock (inside `Event.wait()` or `clear()`): the handler would wait
for itself forever. `Wakeup.set()` only assigns a flag and writes a byte to a pipe; a
waiter selects on the pipe. It offers what a stop loop needs of an Event: `set()`,
`is_set()` and `wait(timeout)`.
"""

from __future__ import annotations

import contextlib
import os
import select


class Wakeup:
    """Set once (from a signal handler, a thread or the loop); waited on by the loop."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._set = False

    def set(self) -> None:
        """Mark it set and wake a waiter: a flag and one write, no lock (signal-safe)."""
        self._set = True
        with contextlib.suppress(OSError):  # full (already woken) or closed (done)
            os.write(self._write, b"!")

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float | None = None) -> bool:
        """Sleep until set or `timeout` seconds pass; whether it is set.

        The byte is never read back, so a set() between the check and the select still
        wakes the select at once.
        """
        if not self._set:
            select.select([self._read], [], [], timeout)
        return self._set

    def close(self) -> None:
        for fd in (self._read, self._write):
            with contextlib.suppress(OSError):
                os.close(fd)
