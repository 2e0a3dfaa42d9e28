"""The ceiling: raw psycopg claim-then-delete with SKIP LOCKED, nothing else.

One process runs `--threads` threads, each on its own autocommit connection, looping:
  UPDATE delayed_jobs SET locked_at, locked_by WHERE id = ANY(ARRAY(SELECT id ... ORDER BY
  priority, run_at, id LIMIT k FOR UPDATE SKIP LOCKED)) RETURNING id      -- claim
  DELETE FROM delayed_jobs WHERE id = ANY(ids) AND locked_by = me         -- "job done"
on pydelayed's own table and indexes, until a claim finds nothing. It is what PostgreSQL
allows for an at-least-once queue on this box, with no job system around it.
"""

from __future__ import annotations

import argparse
import os
import threading

import psycopg

CLAIM = (
    "UPDATE delayed_jobs SET locked_at = now() AT TIME ZONE 'utc', locked_by = %(me)s "
    "WHERE id = ANY(ARRAY(SELECT id FROM delayed_jobs WHERE failed_at IS NULL "
    "AND run_at <= now() AT TIME ZONE 'utc' "
    "AND (locked_at IS NULL OR locked_at < now() AT TIME ZONE 'utc' - interval '1230 seconds') "
    "ORDER BY priority, run_at, id LIMIT %(k)s FOR UPDATE SKIP LOCKED)) RETURNING id"
)
DELETE = "DELETE FROM delayed_jobs WHERE id = ANY(%(ids)s) AND locked_by = %(me)s"


def loop(dsn: str, batch: int, me: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        params = {"me": me, "k": batch}
        while True:
            ids = [row[0] for row in conn.execute(CLAIM, params, prepare=True)]
            if not ids:
                return
            conn.execute(DELETE, {"ids": ids, "me": me}, prepare=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dsn")
    parser.add_argument("--threads", type=int, default=10)
    parser.add_argument("--batch", type=int, default=1)
    args = parser.parse_args()
    threads = [
        threading.Thread(target=loop, args=(args.dsn, args.batch, f"ceiling pid:{os.getpid()} t:{i}"))
        for i in range(args.threads)
    ]
    print("READY", flush=True)
    for t in threads:
        t.start()
    for t in threads:
        t.join()


if __name__ == "__main__":
    main()
