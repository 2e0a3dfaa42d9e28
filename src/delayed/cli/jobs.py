"""`delayed jobs`: find, read, retry and discard jobs from the shell (the API is delayed.admin).

    delayed jobs list --failed --queue mail        a table; --json for scripts
    delayed jobs show 42                           handler, attempts, last_error, lock
    delayed jobs retry 42 43 | --all-failed [--queue mail]
    delayed jobs discard 42 --yes
    delayed jobs unlock --stale
    delayed jobs stats

Each subcommand takes the same -c / --database-url as `delayed work`. Exit status: 0 when
everything asked for was done; 1 when an id was not found, a row was skipped because a worker
is running it, or the database failed; 2 for bad input (options, config).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import click
import sqlalchemy as sa

from .. import admin as api
from ..config import Config
from ..db import describe_error, redact
from ..errors import UnknownPriorityError
from ..record import JobRecord
from ..results import decode_result
from ..timeutil import to_seconds, utcnow
from .options import EXIT_FAILED, config_options, fail, load_config

_ERROR_WIDTH = 60
_CELL_WIDTH = 40


# ----------------------------------------------------------------------------- helpers
def _load(config_file: str | None, database_url: str | None) -> Config:
    config = load_config("jobs", {"config_file": config_file, "database_url": database_url})
    # The commands print what changed themselves; the API's log lines would repeat it.
    logging.getLogger("delayed.admin").setLevel(logging.ERROR)
    return config


@contextmanager
def _database(config: Config) -> Iterator[None]:
    """Turn a database failure into one line naming the (redacted) URL, and exit 1."""
    try:
        yield
    except sa.exc.SQLAlchemyError as exc:
        click.echo(f"Error: database {redact(config.database_url)} failed: {describe_error(exc)}", err=True)
        sys.exit(EXIT_FAILED)
    except (UnknownPriorityError, ValueError) as exc:
        fail(str(exc))


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else ""


def _clean(text: str) -> str:
    """One printable line: control characters (from queue names, errors) shown escaped."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def _cut(text: str | None, width: int) -> str:
    text = _clean(text or "")
    return text if len(text) <= width else text[: width - 1] + "…"


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[str] = ()) -> str:
    """Columns aligned by their widest cell; numeric columns (named in `right`) right-aligned."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        parts = [
            cell.rjust(width) if header in right else cell.ljust(width)
            for header, cell, width in zip(headers, cells, widths, strict=True)
        ]
        return "  ".join(parts).rstrip()

    return "\n".join([line(headers), *(line(row) for row in rows)])


def _record_dict(record: JobRecord, config: Config) -> dict[str, Any]:
    """Every column, datetimes as ISO 8601 (naive UTC, as stored), plus derived fields."""
    out: dict[str, Any] = {}
    for column in (
        "id",
        "name",
        "queue",
        "priority",
        "attempts",
        "run_at",
        "locked_at",
        "locked_by",
        "failed_at",
        "created_at",
        "updated_at",
        "unique_key",
        "concurrency_key",
        "concurrency_limit",
        "finished_at",
        "last_error",
        "handler",
    ):
        value = getattr(record, column)
        out[column] = value.isoformat() if isinstance(value, datetime) else value
    out["result"] = decode_result(record.result)
    out["priority_name"] = api.priority_label(record.priority, config).partition(" ")[2] or None
    out["state"] = _state(record, config)
    return out


def _state(record: JobRecord, config: Config, now: datetime | None = None) -> str:
    now = now or utcnow()
    if record.failed_at is not None:
        return "failed"
    if record.finished_at is not None:
        return "finished"
    if api.is_locked(record, config, now):
        return "locked"
    if record.run_at > now:
        return "future"
    return "ready"


def _ids_or_fail(values: Sequence[str]) -> list[int]:
    try:
        return api._ids(values)
    except ValueError as exc:
        fail(str(exc))
        raise  # unreachable


def _report(result: api.Changed, done: str, force_hint: bool = True) -> None:
    """Print what changed; unknown or skipped ids go to stderr and make the exit status 1."""
    if result.ids:
        click.echo(f"{done} {result.count} job(s): {', '.join(map(str, result.ids))}")
    else:
        click.echo(f"{done} no jobs")
    if result.unknown:
        click.echo(
            f"Error: no job with id {', '.join(map(str, result.unknown))} "
            "(it may have run and been deleted, or been discarded)",
            err=True,
        )
    if result.busy:
        hint = " (pass --force to change them anyway)" if force_hint else ""
        click.echo(
            f"Error: skipped job {', '.join(map(str, result.busy))}: a worker is running it now{hint}",
            err=True,
        )
    if not result.complete:
        sys.exit(EXIT_FAILED)


def _json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


# ----------------------------------------------------------------------------- the group
@click.group("jobs")
def jobs_group() -> None:
    """Find, read, retry and discard jobs (failed ones are kept for this)."""


@jobs_group.command("list")
@config_options("jobs")
@click.option("--failed/--live", "failed", default=None, help="Only failed jobs / only live ones.")
@click.option(
    "--finished", is_flag=True, default=False, help="Only finished jobs whose result is kept (keep_finished)."
)
@click.option("--queue", "queues", multiple=True, help="Only this queue (repeatable).")
@click.option("--priority", default=None, help="A number, a name (its range) or a range: 10..19, eventual..")
@click.option(
    "--locked/--unlocked", "locked", default=None, help="Only jobs a worker holds now / the others."
)
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True, help="At most this many.")
@click.option("--json", "as_json", is_flag=True, help="JSON (every column) instead of a table.")
def list_command(
    config_file: str | None,
    database_url: str | None,
    failed: bool | None,
    finished: bool,
    queues: tuple[str, ...],
    priority: str | None,
    locked: bool | None,
    limit: int,
    as_json: bool,
) -> None:
    """List jobs in id order: a table, or --json for scripts."""
    config = _load(config_file, database_url)
    with _database(config):
        records = api.list_jobs(
            failed=failed,
            queue=list(queues) or None,
            priority=priority,
            locked=locked,
            limit=limit,
            finished=True if finished else None,
        )
    if as_json:
        _json([_record_dict(r, config) for r in records])
        return
    if not records:
        click.echo("No jobs match.", err=True)
        return
    headers = (
        "id",
        "name",
        "queue",
        "priority",
        "attempts",
        "run_at",
        "locked_by",
        "failed_at",
        "last_error",
    )
    rows = [
        (
            str(r.id),
            _cut(r.name, _CELL_WIDTH),
            _cut(r.queue, _CELL_WIDTH),
            api.priority_label(r.priority, config),
            str(r.attempts),
            _when(r.run_at),
            _cut(r.locked_by, _CELL_WIDTH),
            _when(r.failed_at),
            _cut(_first_line(r.last_error), _ERROR_WIDTH),
        )
        for r in records
    ]
    if finished:  # kept results: when they finished and what they returned
        headers = (*headers[:-2], "finished_at", "result")
        rows = [
            (*row[:-2], _when(r.finished_at), _cut(r.result, _ERROR_WIDTH))
            for row, r in zip(rows, records, strict=True)
        ]
    click.echo(_table(headers, rows, right=("id", "attempts")))
    if len(records) == limit:
        click.echo(f"(first {limit}; raise --limit to see more)", err=True)


@jobs_group.command("show")
@config_options("jobs")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="JSON (every column) instead of text.")
def show_command(config_file: str | None, database_url: str | None, job_id: str, as_json: bool) -> None:
    """Show one job: handler, attempts, last_error in full, and its lock."""
    config = _load(config_file, database_url)
    (wanted,) = _ids_or_fail([job_id])
    with _database(config):
        try:
            record = api.get(wanted)
        except api.JobNotFoundError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(EXIT_FAILED)
    if as_json:
        _json(_record_dict(record, config))
        return
    click.echo(_describe(record, config))


def _describe(record: JobRecord, config: Config) -> str:
    now = utcnow()
    state = _state(record, config, now)
    fields = [
        ("id", str(record.id)),
        ("name", _clean(record.name)),
        ("queue", _clean(record.queue) if record.queue is not None else "(none)"),
        ("priority", api.priority_label(record.priority, config)),
        ("state", state),
        ("attempts", str(record.attempts)),
        ("run_at", f"{_when(record.run_at)} UTC"),
        ("failed_at", f"{_when(record.failed_at)} UTC" if record.failed_at else "-"),
        ("created_at", f"{_when(record.created_at)} UTC" if record.created_at else "-"),
        ("updated_at", f"{_when(record.updated_at)} UTC" if record.updated_at else "-"),
        ("lock", _lock_text(record, config, now)),
        ("unique_key", _clean(record.unique_key) if record.unique_key is not None else "-"),
        (
            "limited by",
            f"{_clean(record.concurrency_key)} (limit {record.concurrency_limit})"
            if record.concurrency_key is not None
            else "-",
        ),
    ]
    if record.finished_at is not None:  # a kept result (keep_finished)
        fields.insert(7, ("finished_at", f"{_when(record.finished_at)} UTC"))
    width = max(len(name) for name, _ in fields)
    lines = [f"{name + ':':<{width + 1}} {value}" for name, value in fields]
    lines += ["", "handler:", _indent(_pretty_handler(record.handler))]
    lines += ["", "last_error:", _indent(record.last_error or "(none)")]
    if record.finished_at is not None:
        lines += ["", "result:", _indent(record.result if record.result is not None else "(none kept)")]
    return "\n".join(lines)


def _lock_text(record: JobRecord, config: Config, now: datetime) -> str:
    if record.locked_at is None:
        return "none"
    held = (now - record.locked_at).total_seconds()
    holder = _clean(record.locked_by or "?")
    text = f"locked by {holder} since {_when(record.locked_at)} UTC ({held:.0f} s)"
    if record.failed_at is None and not api.is_locked(record, config, now):
        text += f"; expired (older than the {config.lock_timeout:.0f} s lock timeout): any worker may take it"
    return text


def _pretty_handler(handler: str) -> str:
    try:
        return json.dumps(json.loads(handler), indent=2, sort_keys=True, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        return f"(not JSON: {exc})\n{handler}"


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines()) or "  "


@jobs_group.command("retry")
@config_options("jobs")
@click.argument("job_ids", nargs=-1)
@click.option("--all-failed", is_flag=True, help="Retry every failed job (of --queue, when given).")
@click.option("--queue", default=None, help="With --all-failed: only this queue.")
@click.option("--force", is_flag=True, help="Also retry jobs a worker is running now (they may run twice).")
def retry_command(
    config_file: str | None,
    database_url: str | None,
    job_ids: tuple[str, ...],
    all_failed: bool,
    queue: str | None,
    force: bool,
) -> None:
    """Run jobs again now: failed_at and lock cleared, attempts 0, run_at now."""
    if all_failed and job_ids:
        raise click.UsageError("give job ids or --all-failed, not both")
    if not all_failed and not job_ids:
        raise click.UsageError("give the ids of the jobs to retry, or --all-failed")
    if queue is not None and not all_failed:
        raise click.UsageError("--queue goes with --all-failed")
    config = _load(config_file, database_url)
    wanted = _ids_or_fail(job_ids)
    with _database(config):
        result = api.retry_all_failed(queue=queue) if all_failed else api.retry(wanted, force=force)
    _report(result, "Retried")


@jobs_group.command("discard")
@config_options("jobs")
@click.argument("job_ids", nargs=-1, required=True)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--force", is_flag=True, help="Also delete jobs a worker is running now.")
def discard_command(
    config_file: str | None, database_url: str | None, job_ids: tuple[str, ...], yes: bool, force: bool
) -> None:
    """Delete jobs for good (asks first unless --yes)."""
    config = _load(config_file, database_url)
    wanted = _ids_or_fail(job_ids)
    if not yes:
        if not sys.stdin.isatty():
            fail("refusing to discard without confirmation: stdin is not a terminal; pass --yes to discard")
        click.confirm(f"Delete job(s) {', '.join(map(str, wanted))} for good?", abort=True)
    with _database(config):
        result = api.discard(wanted, force=force)
    _report(result, "Discarded")


@jobs_group.command("unlock")
@config_options("jobs")
@click.option("--stale", is_flag=True, help="Clear locks older than the lock timeout (required).")
@click.option(
    "--older-than",
    default=None,
    help="With --stale: clear locks older than this (e.g. 20m) instead of max_run_time + 30 s.",
)
def unlock_command(
    config_file: str | None, database_url: str | None, stale: bool, older_than: str | None
) -> None:
    """Clear stale locks so the jobs are ready again (attempts unchanged)."""
    if not stale:
        raise click.UsageError("pass --stale (only stale locks can be cleared from here)")
    config = _load(config_file, database_url)
    seconds: float | None = None
    if older_than is not None:
        try:
            seconds = to_seconds(older_than)
        except ValueError as exc:
            fail(f"--older-than: {exc}")
    with _database(config):
        result = api.unlock_stale(older_than=seconds)
    _report(result, "Unlocked")


@jobs_group.command("stats")
@config_options("jobs")
@click.option("--queue", "queues", multiple=True, help="Only this queue (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of a table.")
def stats_command(
    config_file: str | None, database_url: str | None, queues: tuple[str, ...], as_json: bool
) -> None:
    """Counts per queue and priority (the monitor's): total, ready, future, locked, erroring, failed."""
    config = _load(config_file, database_url)
    with _database(config):
        groups = api.stats(queue=list(queues) or None)
    if as_json:
        _json([g.as_dict() for g in groups])
        return
    if not groups:
        click.echo("No jobs.", err=True)
        return
    counts = ("total", "ready", "future", "locked", "erroring", "failed")
    rows = [
        (
            _cut(g.queue, _CELL_WIDTH) if g.queue is not None else "(none)",
            g.priority,
            *(str(getattr(g, c)) for c in counts),
            _age(g.max_age),
        )
        for g in groups
    ]
    totals = (
        "all",
        "",
        *(str(sum(getattr(g, c) for g in groups)) for c in counts),
        _age(max(g.max_age for g in groups)),
    )
    headers = ("queue", "priority", *counts, "oldest_ready")
    click.echo(_table(headers, [*rows, totals], right=(*counts, "oldest_ready")))


def _age(seconds: float) -> str:
    """`45s`, `12m`, `3h`, `2d`: how long the oldest ready job has waited."""
    if seconds <= 0:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"
