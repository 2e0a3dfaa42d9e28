"""The child -> master reports: the one encoder and the one decoder, used by both sides.

A child tells its master what it does over a pipe, one report per line:

    B <worker name>                                 booted; the name its rows are locked by
    S <job id> <started> <max_run_time> <thread>    a job started (time.monotonic()) *
    E <job id>                                      that job ended *
    H <busy>                                        heartbeat, every second
    D <error>                                       its worker cannot reach the database
    U                                               its worker reaches the database (again)

* Only from a job thread without a slot in the child's shared table (running.py), where
  job threads normally write their starts and ends: no line per job, no master wake-up.

CLOCK_MONOTONIC is one clock for every process on the host, so the master compares a
child's `started` with its own `time.monotonic()`.

Framing is the decoder's business alone: it splits whatever bytes a read returns into
lines and keeps a partial line for the next read. So a writer may put one report or
several in one write (`encode(*reports)`): a later change that batches reports, or one
that changes the format, touches this module and the writer's buffering, not the
master's handling. A write of at most PIPE_BUF bytes (4096 on Linux) is atomic, so
several job threads writing whole lines never interleave.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Booted:
    """The child finished booting; `worker` is the name its Worker locks rows with."""

    worker: str


@dataclass(frozen=True)
class Started:
    """A job thread started a job at `started` (time.monotonic(), shared by the host)."""

    job_id: int
    started: float
    max_run_time: float
    thread: str


@dataclass(frozen=True)
class Ended:
    """That job ended (whatever its outcome: the outcome goes to the database, not here)."""

    job_id: int


@dataclass(frozen=True)
class Heartbeat:
    """The child is alive; `busy` job threads are running a job."""

    busy: int


@dataclass(frozen=True)
class DatabaseDown:
    """The child's worker failed to claim jobs several times in a row; `error` says why.

    Sent once per outage (child_process.DatabaseWatch), so the master can say that its
    children do not work rather than that they run.
    """

    error: str


@dataclass(frozen=True)
class DatabaseUp:
    """The child's worker claimed (even nothing): its first pickup, or the first after an outage."""


@dataclass(frozen=True)
class Unknown:
    """A line of a kind this master does not know (a newer child?): ignored."""

    line: str


@dataclass(frozen=True)
class Malformed:
    """A line of a known kind whose fields do not parse: ignored, and worth a warning."""

    line: str


Report = Booted | Started | Ended | Heartbeat | DatabaseDown | DatabaseUp
Decoded = Report | Unknown | Malformed


def _field(text: str) -> str:
    """A field with no separator in it: spaces become '_', an empty field '-'."""
    return text.replace("\n", "_").replace(" ", "_") or "-"


def _line(report: Report) -> str:
    if isinstance(report, Heartbeat):
        return f"H {report.busy}"
    if isinstance(report, Started):
        return f"S {report.job_id} {report.started:.6f} {report.max_run_time:.6f} {_field(report.thread)}"
    if isinstance(report, Ended):
        return f"E {report.job_id}"
    if isinstance(report, DatabaseDown):
        return f"D {' '.join(report.error.split()) or '-'}"  # one line, whatever the driver said
    if isinstance(report, DatabaseUp):
        return "U"
    # The last field may hold spaces ("host:h pid:1 0badcafe"), never a line break.
    return f"B {report.worker.replace(chr(10), ' ')}"


def encode(*reports: Report) -> bytes:
    """The bytes of one write carrying these reports, in order."""
    return "".join(_line(report) + "\n" for report in reports).encode()


def decode_line(line: bytes) -> Decoded:
    """One line (without its newline) back into a report."""
    text = line.decode(errors="replace")
    kind, _, rest = text.partition(" ")
    try:
        if kind == "H":
            return Heartbeat(int(rest))
        if kind == "S":
            job_id, started, max_run_time, thread = rest.split(" ", 3)
            return Started(int(job_id), float(started), float(max_run_time), thread)
        if kind == "E":
            return Ended(int(rest))
        if kind == "B":
            return Booted(rest)
        if kind == "D":
            return DatabaseDown(rest)
        if kind == "U":
            if rest:
                raise ValueError(rest)
            return DatabaseUp()
    except ValueError:
        return Malformed(text)
    return Unknown(text)


class Decoder:
    """Turns the bytes read from one child's pipe into reports; keeps a partial line."""

    def __init__(self) -> None:
        self._partial = b""

    def feed(self, data: bytes) -> list[Decoded]:
        """The reports completed by `data` (none when it ends inside a line)."""
        *lines, self._partial = (self._partial + data).split(b"\n")
        return [decode_line(line) for line in lines]
