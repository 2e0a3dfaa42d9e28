"""Make the dashboard screenshots in docs/img/ from a real run (no mock data, no drawing).

    python docs/make_screenshots.py [--seconds 45]

A scratch SQLite file gets failing jobs (a real worker fails them), a backlog, scheduled jobs
and two jobs locked by a host that is "gone"; a real `delayed work` process (with
`[prometheus] multiproc_dir`) works the backlog off slowly while the dashboard samples every
second, so the charts are the table's real history and the workers' real throughput. Then
headless Chromium (Debian's chromium + chromedriver) saves the pages. Everything is removed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))  # tests.web_helpers: the same uvicorn and Chromium set-up as the tests

JOBS = textwrap.dedent(
    """
    import time
    import delayed

    class SendReceipt(delayed.Job, name="billing.send_receipt"):
        queue = "mail"
        max_attempts = 1
        def perform(self, order_id, email):
            if order_id % 3 == 0:
                raise ConnectionError(f"SMTP 451 from mx.example.net while sending to {email}")
            time.sleep(0.05)

    class ChargeCard(delayed.Job, name="billing.charge_card"):
        queue = "billing"
        priority = "interactive"
        max_attempts = 1
        def perform(self, order_id, amount_cents):
            if order_id % 4 == 0:
                raise KeyError(f"payment method for order {order_id}")
            time.sleep(0.02)

    class BuildReport(delayed.Job, name="reports.build"):
        queue = "reports"
        priority = "reporting"
        max_attempts = 1
        def perform(self, account_id, month):
            raise TimeoutError(f"report query for account {account_id} ran past 30 s")

    class Resize(delayed.Job, name="media.resize"):
        priority = "eventual"
        def perform(self, upload_id, sizes):
            time.sleep(0.04)
    """
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--seconds", type=float, default=45.0, help="How long the worker runs while sampling."
    )
    parser.add_argument("--out", default=str(ROOT / "docs" / "img"))
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="pyd-shots-"))
    worker = None
    try:
        (tmp / "shop_jobs.py").write_text(JOBS)
        sys.path.insert(0, str(tmp))
        url = f"sqlite:///{tmp / 'shop.sqlite3'}"
        metrics = tmp / "metrics"
        config_path = tmp / "delayed.toml"
        config_path.write_text(
            f'[delayed]\ndatabase_url = "{url}"\nrequire = ["shop_jobs"]\nsleep_delay = 0.2\n'
            f'[prometheus]\nmultiproc_dir = "{metrics}"\n'
        )
        import shop_jobs  # type: ignore[import-not-found]

        import delayed
        from delayed.timeutil import utcnow

        delayed.configure(config_path)
        delayed.migrate()
        failing = [shop_jobs.SendReceipt.build(i, f"customer{i}@example.com") for i in range(3, 40, 3)]
        failing += [shop_jobs.ChargeCard.build(i, 1999 + i) for i in range(4, 30, 4)]
        failing += [shop_jobs.BuildReport.build(a, "2026-10") for a in (7, 12)]
        delayed.enqueue_many(failing)
        delayed.Worker(sleep_delay=0.1).work_off(len(failing))
        delayed.enqueue_many(
            [shop_jobs.Resize.build(u, [64, 256, 1024]) for u in range(3000)]
            + [shop_jobs.SendReceipt.build(o, f"c{o}@example.com") for o in range(1000, 1300) if o % 3]
            + [shop_jobs.ChargeCard.build(o, 500) for o in range(2000, 2100) if o % 4]
        )
        later = [
            shop_jobs.BuildReport.set(wait=3600 * (1 + i % 20)).build(100 + i, "2026-11") for i in range(40)
        ]
        delayed.enqueue_many(later)
        stuck = delayed.enqueue_many(
            [shop_jobs.Resize.set(priority="user_visible").build(9000 + i, [64]) for i in range(2)]
        )
        engine = delayed.get_engine()
        table = delayed.jobs_table
        with engine.begin() as conn:
            conn.execute(
                table.update()
                .where(table.c.id.in_(stuck))
                .values(locked_at=utcnow() - timedelta(seconds=95), locked_by="host:web-3 pid:4242")
            )
            old = table.update().where(table.c.queue == "reports", table.c.failed_at.is_(None))
            conn.execute(old.values(run_at=utcnow() + timedelta(hours=2)))

        from tests.web_helpers import chromium, serve

        from delayed.web import create_app

        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(tmp), str(ROOT / "src"), env.get("PYTHONPATH", "")])
        app = create_app(refresh=0, sample_interval=1, history=args.seconds + 30)
        with serve(app) as base:
            import httpx

            httpx.get(base + "/")  # starts the sampler before the worker
            time.sleep(3)
            worker = subprocess.Popen(
                [sys.executable, "-m", "delayed.cli", "work", "-c", str(config_path), "--max-claims", "2"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(args.seconds)  # the worker is still busy when the pages are saved
            out = Path(args.out)
            out.mkdir(parents=True, exist_ok=True)
            with chromium() as driver:
                for name, path in (
                    ("overview", "/"),
                    ("jobs-failed", "/jobs?state=failed"),
                    ("job-detail", f"/jobs/{_first_failed(engine, table, 'billing.send_receipt')}"),
                ):
                    shoot(driver, base + path, out / f"dashboard-{name}.png")
                driver.get(base + "/jobs?state=failed&queue=mail")
                driver.find_element("css selector", "#matching-retry").click()
                time.sleep(0.5)
                shoot(driver, None, out / "dashboard-confirm.png", width=1000, height=420)
            worker.terminate()
            worker.wait(30)
            worker = None
        print(f"screenshots in {out}")
    finally:
        if worker is not None:
            worker.kill()
        shutil.rmtree(tmp, ignore_errors=True)


def _first_failed(engine, table, name: str) -> int:  # type: ignore[no-untyped-def]
    import sqlalchemy as sa

    with engine.connect() as conn:
        query = sa.select(sa.func.max(table.c.id)).where(table.c.name == name, table.c.failed_at.is_not(None))
        return int(conn.execute(query).scalar_one())


def shoot(driver, url: str | None, path: Path, width: int = 1400, height: int | None = None) -> None:  # type: ignore[no-untyped-def]
    """A screenshot of the whole page (the window is made as tall as the page, up to 1600 px)."""
    if url is not None:
        driver.get(url)
    if height is None:
        height = max(
            min(driver.execute_script("return document.documentElement.scrollHeight") + 120, 1600), 600
        )
    driver.set_window_size(width, height)
    time.sleep(0.3)
    driver.save_screenshot(str(path))
    driver.set_window_size(1400, 1000)


if __name__ == "__main__":
    main()
