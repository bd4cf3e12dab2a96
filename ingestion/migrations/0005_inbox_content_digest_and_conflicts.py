"""A content digest on inbox rows, and conflicts on repeat deliveries (SPEC section 1).

Rows stored before this keep an empty digest; intake computes it from their raw JSON when a
repeat of one of them arrives.
"""
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('ingestion', '0004_inbox_key_includes_cloudevents_source'),
    ]

    operations = [
        migrations.AddField(
            model_name='duplicatedelivery',
            name='conflict',
            field=models.BooleanField(db_default=False, default=False),
        ),
        migrations.AddField(
            model_name='duplicatedelivery',
            name='raw',
            field=models.JSONField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='inboxevent',
            name='content_digest',
            field=models.CharField(blank=True, db_default='', default='', max_length=64),
        ),
        migrations.AddIndex(
            model_name='duplicatedelivery',
            index=models.Index(condition=models.Q(('conflict', True)), fields=['received_at'], name='duplicate_conflict_recv_idx'),
        ),
    ]
