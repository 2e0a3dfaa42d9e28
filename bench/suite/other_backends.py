"""Ours on MariaDB and SQLite: enqueue, drain (plain `delayed work`), and each backend's ceiling."""

from __future__ import annotations

import scenarios
from registry import Context, scenario

# The raw loop per backend: processes x connections, jobs per claim statement. SQLite has one
# writer at a time, so more connections only queue on its lock: one per process.
CEILINGS = {
    "mysql": scenarios.Ceiling("mysql", 2, 4, 50),
    "sqlite": scenarios.Ceiling("sqlite", 2, 1, 50),
}


@scenario("other-backends", order=50, title="pydelayed on MariaDB and SQLite, beside their ceilings")
def other_backends(ctx: Context) -> None:
    """For each --backends entry: our enqueue and drain, and the raw claim+delete loop."""
    ours = ctx.ours
    plain = ours.variant(ours.name, supervisor=False)
    n = ctx.sizes.jobs
    for backend in [b.strip() for b in ctx.args.backends.split(",") if b.strip()]:
        e = ctx.measure(
            "enqueue", f"ours/{backend}", lambda b=backend: scenarios.enqueue(ours, b, ctx.sizes.single, n)
        )
        d = ctx.measure(
            "drain",
            f"ours/{backend}",
            lambda b=backend: scenarios.drain(plain, b, n, ctx.W, ctx.C, ctx.timeout),
        )
        spec = CEILINGS.get(backend)
        c = None
        if spec is not None:
            c = ctx.measure("ceiling", spec.label, lambda s=spec: scenarios.ceiling(s, ours, n, ctx.timeout))
        ctx.report.put("other-backends", backend, {"enqueue": e, "drain": d, "ceiling": c})
        if e:
            ctx.report.row(
                f"{backend}: enqueue, one per call", "jobs/s", True, {"pydelayed": e["single_rate"]}
            )
            ctx.report.row(f"{backend}: enqueue, bulk", "jobs/s", True, {"pydelayed": e["bulk_rate"]})
        drained = {"pydelayed": d["rate"]} if d else {}
        if c and spec is not None:
            drained["raw ceiling"] = c["rate"]  # its shape (processes, connections, batch) is in the JSON
        ctx.report.row(f"{backend}: drain, ours W={ctx.W} x C={ctx.C} plain", "jobs/s", True, drained)
