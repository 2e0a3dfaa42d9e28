"""Create pydelayed's jobs table with pydelayed's own `migrate` (see contrib/django/schema.py).

Not atomic: `migrate` opens its own connection to the same database (DDL on MySQL commits
anyway), so it must not wait behind a transaction Django holds open on this one. Reversing
leaves the table in place: it may hold jobs, and dropping them is an operator's decision.
"""

from django.db import migrations

from delayed.contrib.django.schema import migrate_jobs_table


class Migration(migrations.Migration):
    initial = True
    atomic = False
    dependencies: list[tuple[str, str]] = []
    operations = [migrations.RunPython(migrate_jobs_table, migrations.RunPython.noop)]
