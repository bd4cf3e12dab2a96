"""The inbox partitioned by month (PostgreSQL) and its retention (both backends)."""
import datetime as dt
import io

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from exceptions.models import PayloadCorrection
from ingestion import partitions
from ingestion.events import make_event
from ingestion.models import DuplicateDelivery, InboxEvent, InboxKey
from opsview.models import AuditEvent

NOW = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC)
postgres_only = pytest.mark.skipif(connection.vendor != "postgresql",
                                   reason="SQLite keeps a plain inbox table")


def client_event(event_id="evt-1", name="Acme"):
    return make_event("client.upserted", {"client_id": "c-1", "name": name},
                      event_id=event_id, source="urn:crm", time="2026-11-02T10:00:00Z")


def age(pk, days):
    """Move an inbox row `days` back (on PostgreSQL, into that month's partition)."""
    row = InboxEvent.objects.get(pk=pk)
    InboxEvent.objects.filter(pk=pk).update(received_at=row.received_at - dt.timedelta(days))


def stored(source, event_id, *, status, received_at):
    return InboxEvent.objects.create(source=source, event_id=event_id, type="client.upserted",
                                     status=status, received_at=received_at, raw={})


def test_months_are_counted_in_utc():
    assert partitions.month_start(dt.datetime(2026, 1, 31, 23, 30, tzinfo=dt.UTC)) == \
        dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert partitions.add_months(dt.datetime(2026, 1, 1, tzinfo=dt.UTC), -13) == \
        dt.datetime(2024, 12, 1, tzinfo=dt.UTC)
    assert partitions.retention_cutoff(12, NOW) == dt.datetime(2025, 12, 1, tzinfo=dt.UTC)


def test_intake_writes_the_key_once(deliver):
    assert deliver.send(client_event(), client_event("evt-2"))["accepted"] == 2
    assert deliver.send(client_event())["duplicates"] == 1
    assert InboxKey.objects.count() == 2
    assert InboxEvent.objects.count() == 2


def test_a_dead_letter_without_an_id_has_no_key(deliver):
    broken = client_event()
    del broken["id"]
    body = deliver.send(broken)
    assert body["accepted"] == 0 and len(body["rejected"]) == 1
    assert InboxEvent.objects.get().event_id is None
    assert not InboxKey.objects.exists()


def test_a_redelivery_months_later_is_a_duplicate(deliver):
    deliver.send(client_event())
    age(InboxEvent.objects.get().pk, 400)
    body = deliver.send(client_event())
    assert (body["accepted"], body["duplicates"]) == (0, 1)
    assert InboxEvent.objects.count() == 1


def test_a_redelivery_of_a_pruned_event_is_still_a_duplicate(deliver, process):
    deliver.send(client_event())
    process()
    age(InboxEvent.objects.get().pk, 800)
    call_command("prune_inbox", months=12, stdout=io.StringIO())
    assert not InboxEvent.objects.exists()
    body = deliver.send(client_event("evt-1", "Changed"))
    assert (body["accepted"], body["duplicates"]) == (0, 1)
    # Nothing left to compare with: counted as a repeat, not a conflict.
    assert not DuplicateDelivery.objects.get().conflict


def test_retention_drops_only_processed_rows_past_it(source, case):
    old, recent = NOW - dt.timedelta(days=500), NOW - dt.timedelta(days=20)
    rows = {status: stored(source, f"old-{status}", status=status, received_at=old)
            for status in ("processed", "dead", "pending", "unhandled", "discarded")}
    original = stored(source, "old-orig", status="discarded", received_at=old)
    corrected = stored(source, "old-fixed", status="processed", received_at=old)
    PayloadCorrection.objects.create(case=case, original=original, corrected=corrected,
                                     actor=User.objects.create(username="t"))
    fresh = stored(source, "new", status="processed", received_at=recent)
    preview = partitions.prune(12, dry_run=True, now=NOW)
    assert InboxEvent.objects.count() == 8
    result = partitions.prune(12, now=NOW)
    assert (preview.dropped, result.dropped) == (1, 1)
    assert (preview.kept, result.kept) == (6, 6)
    kept = set(InboxEvent.objects.values_list("pk", flat=True))
    assert kept == {row.pk for row in (*rows.values(), original, corrected, fresh)} - {
        rows["processed"].pk}
    assert partitions.prune(12, now=NOW).dropped == 0


def test_prune_inbox_is_audited_and_its_dry_run_changes_nothing(source):
    row = stored(source, "e", status="processed",
                 received_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=900))
    call_command("prune_inbox", "--dry-run", months=12, stdout=io.StringIO())
    assert InboxEvent.objects.filter(pk=row.pk).exists()
    assert not AuditEvent.objects.filter(action="inbox.pruned").exists()
    call_command("prune_inbox", months=12, stdout=io.StringIO())
    assert not InboxEvent.objects.filter(pk=row.pk).exists()
    audit = AuditEvent.objects.get(action="inbox.pruned")
    assert audit.actor_label == "command:prune_inbox"


def test_a_retention_of_zero_keeps_everything(source, settings):
    settings.INBOX_RETENTION_MONTHS = 0
    stored(source, "e", status="processed", received_at=NOW - dt.timedelta(days=3000))
    call_command("prune_inbox", stdout=io.StringIO())
    assert InboxEvent.objects.count() == 1


def test_a_negative_retention_is_refused(db):
    with pytest.raises(CommandError, match="--months"):
        call_command("prune_inbox", months=-1)


@postgres_only
def test_partitions_are_created_ahead_and_idempotently(db):
    later = dt.datetime(2031, 5, 10, tzinfo=dt.UTC)
    created = partitions.ensure_partitions(2, now=later)
    assert created == [f"ingestion_inboxevent_p2031{m:02d}" for m in (5, 6, 7)]
    assert partitions.ensure_partitions(2, now=later) == []
    names = [name for name, _ in partitions.month_partitions()]
    assert set(created) <= set(names)


@postgres_only
def test_rows_outside_every_month_land_in_default_and_move_to_their_partition(source):
    far_past = stored(source, "p", status="processed", received_at=dt.datetime(1990, 1, 5,
                                                                              tzinfo=dt.UTC))
    far_future = stored(source, "f", status="pending", received_at=dt.datetime(2040, 3, 5,
                                                                              tzinfo=dt.UTC))

    def home(pk):
        with connection.cursor() as cursor:
            cursor.execute("SELECT tableoid::regclass::text FROM ingestion_inboxevent "
                           "WHERE id = %s", [pk])
            return cursor.fetchone()[0]

    assert home(far_past.pk) == home(far_future.pk) == partitions.DEFAULT_PARTITION
    partitions.ensure_partitions(0, now=dt.datetime(2040, 3, 1, tzinfo=dt.UTC))
    assert home(far_future.pk) == "ingestion_inboxevent_p204003"
    assert InboxEvent.objects.count() == 2


@postgres_only
def test_prune_drops_whole_partitions_and_moves_kept_rows_to_default(source):
    old = NOW - dt.timedelta(days=500)
    partitions.create_month_partition(partitions.month_start(old))
    dead = stored(source, "d", status="dead", received_at=old)
    stored(source, "p", status="processed", received_at=old)
    name = partitions.partition_name(partitions.month_start(old))
    result = partitions.prune(12, now=NOW)
    assert name in result.partitions and result.dropped == 1
    assert name not in {n for n, _ in partitions.month_partitions()}
    assert list(InboxEvent.objects.values_list("pk", flat=True)) == [dead.pk]


@postgres_only
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_migration_keeps_every_row_id_and_the_sequence():
    executor = MigrationExecutor(connection)
    before = [("ingestion", "0009_inbox_key_table")]
    after = [("ingestion", "0010_inbox_partitioned_by_month")]
    executor.migrate(before)
    try:
        assert not partitions.is_partitioned()
        old = executor.loader.project_state(before).apps
        src = old.get_model("ingestion", "Source").objects.create(slug="legacy", name="L")
        model = old.get_model("ingestion", "InboxEvent")
        for n in range(30):
            model.objects.create(source=src, event_id=f"e-{n}" if n % 5 else None,
                                 status="dead" if n % 5 == 0 else "processed",
                                 received_at=NOW - dt.timedelta(days=40 * n), raw={"n": n})
        model.objects.filter(raw__n__in=[3, 7]).delete()  # gaps in the ids stay gaps
        rows = sorted(model.objects.values_list("pk", "event_id", "status", "received_at"))
        executor = MigrationExecutor(connection)
        executor.migrate(after)
        assert partitions.is_partitioned()
        new = executor.loader.project_state(after).apps.get_model("ingestion", "InboxEvent")
        assert sorted(new.objects.values_list("pk", "event_id", "status", "received_at")) == rows
        created = new.objects.create(source_id=src.pk, event_id="later", raw={})
        assert created.pk > max(pk for pk, *_ in rows)
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
