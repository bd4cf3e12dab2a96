"""The idempotency key becomes (Source, CloudEvents `source`, event `id`) (SPEC version 2).

Existing rows take their CloudEvents source from the raw event they keep, in one set-based
UPDATE; a dead letter whose `source` was missing or not a string keeps "". Rows that were
unique by (Source, id) stay unique by the longer key, so the new constraint always builds.
Earlier DuplicateDelivery rows keep "" (they only feed a count).
"""
from django.db import migrations, models

FILL = {
    "postgresql": """
        UPDATE ingestion_inboxevent SET event_source = left(raw ->> 'source', 500)
        WHERE jsonb_typeof(raw -> 'source') = 'string'
    """,
    "sqlite": """
        UPDATE ingestion_inboxevent
        SET event_source = substr(json_extract(raw, '$.source'), 1, 500)
        WHERE json_type(raw, '$.source') = 'text'
    """,
}


def fill_event_source(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor not in FILL:
        raise NotImplementedError(f"no fill statement for {vendor}")
    schema_editor.execute(FILL[vendor])


class Migration(migrations.Migration):

    dependencies = [
        ("ingestion", "0003_inbox_time_entry_freshness_index"),
    ]

    operations = [
        migrations.AddField(
            model_name="inboxevent",
            name="event_source",
            field=models.CharField(blank=True, db_default="", default="", max_length=500),
        ),
        migrations.AddField(
            model_name="duplicatedelivery",
            name="event_source",
            field=models.CharField(blank=True, db_default="", default="", max_length=500),
        ),
        migrations.RunPython(fill_event_source, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="inboxevent",
            constraint=models.UniqueConstraint(fields=("source", "event_source", "event_id"),
                                               name="inbox_idempotency_key_uniq"),
        ),
        migrations.RemoveConstraint(
            model_name="inboxevent",
            name="inbox_source_event_uniq",
        ),
    ]
