
import django.db.models.deletion
from django.db import migrations, models

# Every stored event with an id gets its key; the unique constraint is created after, so a
# table that somehow held a repeat is reported instead of silently merged.
FILL_KEYS = """
INSERT INTO ingestion_inboxkey (source_id, event_source, event_id)
SELECT source_id, event_source, event_id FROM ingestion_inboxevent WHERE event_id IS NOT NULL
"""


class Migration(migrations.Migration):

    dependencies = [
        ('ingestion', '0008_duplicate_deliveries_plural'),
    ]

    operations = [
        migrations.CreateModel(
            name='InboxKey',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('event_source', models.CharField(blank=True, db_default='', default='', max_length=500)),
                ('event_id', models.CharField(max_length=255)),
            ],
        ),
        migrations.RemoveConstraint(
            model_name='inboxevent',
            name='inbox_idempotency_key_uniq',
        ),
        migrations.AddIndex(
            model_name='inboxevent',
            index=models.Index(fields=['source', 'event_source', 'event_id'], name='inbox_key_idx'),
        ),
        migrations.AddField(
            model_name='inboxkey',
            name='source',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='ingestion.source'),
        ),
        migrations.RunSQL(FILL_KEYS, migrations.RunSQL.noop),
        migrations.AddConstraint(
            model_name='inboxkey',
            constraint=models.UniqueConstraint(fields=('source', 'event_source', 'event_id'), name='inbox_idempotency_key_uniq'),
        ),
    ]
