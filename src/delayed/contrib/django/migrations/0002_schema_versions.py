"""Bring pydelayed's schema to this release's version: its versioned steps, recorded in
`delayed_schema_migrations` (a database migrated by 0001 under an earlier release is adopted:
its existing tables are recorded, the missing steps run).

Each pydelayed release that adds schema steps adds one migration like this one (same body),
so `manage.py migrate` always leaves the schema current; see docs/migrations.md.
"""

from django.db import migrations

from delayed.contrib.django.schema import migrate_jobs_table


class Migration(migrations.Migration):
    atomic = False  # migrate_jobs_table uses its own connection and lock (see 0001)
    dependencies = [("delayed", "0001_initial")]
    operations = [migrations.RunPython(migrate_jobs_table, migrations.RunPython.noop)]
