"""The idempotency key of SPEC section 1: (the Source of the URL, the CloudEvents `source`,
the event `id`)."""
import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from ingestion import pipeline
from ingestion.events import make_event
from ingestion.models import DuplicateDelivery, InboxEvent
from opsview.models import Client

CRM = "urn:relay:crm"
ERP = "urn:relay:erp"


def client_event(name="Acme", *, source=CRM, event_id="evt-1", client_id="c-1"):
    return make_event("client.upserted", {"client_id": client_id, "name": name},
                      event_id=event_id, source=source, time="2026-11-02T10:00:00Z")


def test_one_id_under_two_cloudevents_sources_is_two_events(deliver, process):
    first = deliver.send(client_event(source=CRM))
    second = deliver.send(client_event("Beta", source=ERP, client_id="c-2"))
    assert (first["accepted"], second["accepted"]) == (1, 1)
    assert second["duplicates"] == 0
    process()
    assert sorted(Client.objects.values_list("name", flat=True)) == ["Acme", "Beta"]
    assert sorted(InboxEvent.objects.values_list("event_source", flat=True)) == [CRM, ERP]


def test_one_id_under_two_cloudevents_sources_in_one_batch_is_two_events(deliver):
    body = deliver.send(client_event(source=CRM), client_event("Beta", source=ERP))
    assert body == {"accepted": 2, "duplicates": 0, "rejected": []}


def test_a_repeat_of_the_whole_key_is_a_duplicate(deliver):
    deliver.send(client_event(source=CRM), client_event("Beta", source=ERP))
    body = deliver.send(client_event(source=CRM))
    assert body == {"accepted": 0, "duplicates": 1, "rejected": []}
    assert InboxEvent.objects.count() == 2
    repeat = DuplicateDelivery.objects.get()
    assert (repeat.event_source, repeat.event_id) == (CRM, "evt-1")


def test_replay_of_an_envelope_dead_letter_checks_the_whole_key(deliver):
    """A dead letter whose id was meanwhile accepted under another CloudEvents source is a
    different event: replayed, not discarded. Under the same source it is a repeat."""
    other_source = client_event(source=ERP)
    same_source = client_event(source=CRM, event_id="evt-2", client_id="c-2")
    for broken in (dict(other_source), dict(same_source)):
        broken["specversion"] = "0.3"
        deliver.send(broken)
    deliver.send(client_event(source=CRM), client_event(source=CRM, event_id="evt-2"))
    dead = {row.raw["source"] + row.raw["id"]: row
            for row in InboxEvent.objects.filter(status="dead")}
    for row in dead.values():
        row.raw = {**row.raw, "specversion": "1.0"}
        row.save(update_fields=["raw"])
    result = pipeline.replay(sorted(row.pk for row in dead.values()))
    assert result["processed"] == 1
    replayed = InboxEvent.objects.get(pk=dead[ERP + "evt-1"].pk)
    assert (replayed.status, replayed.event_source) == ("processed", ERP)
    assert InboxEvent.objects.get(pk=dead[CRM + "evt-2"].pk).status == "discarded"


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_migration_fills_the_cloudevents_source_from_the_stored_event():
    executor = MigrationExecutor(connection)
    before = [("ingestion", "0003_inbox_time_entry_freshness_index")]
    after = [("ingestion", "0004_inbox_key_includes_cloudevents_source")]
    executor.migrate(before)
    old = executor.loader.project_state(before).apps
    source = old.get_model("ingestion", "Source").objects.create(slug="legacy", name="Legacy")
    InboxEvent_ = old.get_model("ingestion", "InboxEvent")
    InboxEvent_.objects.create(source=source, event_id="e-1", type="client.upserted",
                               raw={"id": "e-1", "source": CRM, "type": "client.upserted"})
    InboxEvent_.objects.create(source=source, event_id=None, status="dead", raw=42)
    InboxEvent_.objects.create(source=source, event_id=None, status="dead",
                               raw={"id": "e-3", "source": ["not", "a", "string"]})
    try:
        executor = MigrationExecutor(connection)
        executor.migrate(after)
        new = executor.loader.project_state(after).apps.get_model("ingestion", "InboxEvent")
        assert list(new.objects.order_by("pk").values_list("event_id", "event_source")) == [
            ("e-1", CRM), (None, ""), (None, "")]
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())


# --- Conflicts: a repeat of the key with other content --------------------------------------
def test_a_repeat_with_other_content_is_a_conflict_kept_without_effect(deliver, process):
    deliver.send(client_event("Acme"))
    process()
    changed = client_event("Acme Renamed")
    assert deliver.send(changed) == {"accepted": 0, "duplicates": 1, "rejected": []}
    process()
    assert Client.objects.get().name == "Acme"
    repeat = DuplicateDelivery.objects.get()
    assert repeat.conflict is True
    assert repeat.raw == changed
    assert InboxEvent.objects.count() == 1


def test_an_identical_repeat_is_no_conflict_and_keeps_no_copy(deliver):
    deliver.send(client_event("Acme"))
    deliver.send(client_event("Acme"))
    repeat = DuplicateDelivery.objects.get()
    assert (repeat.conflict, repeat.raw) == (False, None)


def test_key_order_and_spacing_are_not_a_difference(deliver):
    event = client_event("Acme")
    deliver.send(event)
    reordered = dict(reversed(list(event.items())))
    deliver.send(reordered)
    assert DuplicateDelivery.objects.get().conflict is False


def test_a_conflicting_repeat_inside_one_batch_is_a_conflict(deliver):
    body = deliver.send(client_event("Acme"), client_event("Other"), client_event("Acme"))
    assert body == {"accepted": 1, "duplicates": 2, "rejected": []}
    assert sorted(DuplicateDelivery.objects.values_list("conflict", flat=True)) == [False, True]
    assert InboxEvent.objects.get().raw["data"]["name"] == "Acme"


def test_new_rows_keep_the_digest_of_their_canonical_json(deliver):
    import hashlib
    import json

    event = client_event("Acme")
    deliver.send(event)
    canonical = json.dumps(event, sort_keys=True, separators=(",", ":"))
    expected = hashlib.sha256(canonical.encode()).hexdigest()
    assert InboxEvent.objects.get().content_digest == expected


def test_a_row_stored_without_a_digest_is_compared_by_its_raw_json(deliver):
    deliver.send(client_event("Acme"))
    InboxEvent.objects.update(content_digest="")  # as rows stored before digests were kept
    deliver.send(client_event("Acme"))
    deliver.send(client_event("Acme Renamed"))
    assert list(DuplicateDelivery.objects.order_by("pk").values_list("conflict", flat=True)) == [
        False, True]


def test_integration_health_counts_conflicts_received_in_the_window(deliver):
    import datetime as dt

    from reporting import kpis

    deliver.send(client_event("Acme"))
    deliver.send(client_event("Acme"), client_event("Changed"))
    now = dt.datetime.now(dt.UTC)
    health = kpis.integration_health(start=now - dt.timedelta(hours=1),
                                     end=now + dt.timedelta(minutes=1))
    assert (health["duplicates"], health["conflicts"]) == (2, 1)
    earlier = kpis.integration_health(start=now - dt.timedelta(hours=3),
                                      end=now - dt.timedelta(hours=2))
    assert earlier["conflicts"] == 0


def test_the_admin_lists_conflicts_with_the_conflicting_event(deliver, admin_client):
    deliver.send(client_event("Acme"))
    deliver.send(client_event("Acme <b>Renamed</b>"))
    listing = admin_client.get("/admin/ingestion/duplicatedelivery/?conflict__exact=1")
    assert listing.status_code == 200
    html = listing.content.decode()
    assert "column-conflict" in html and "evt-1" in html
    repeat = DuplicateDelivery.objects.get()
    html = admin_client.get(f"/admin/ingestion/duplicatedelivery/{repeat.pk}/change/"
                            ).content.decode()
    # The conflicting event, escaped, beside the stored one it contradicts.
    assert "Acme &lt;b&gt;Renamed&lt;/b&gt;" in html and "<b>Renamed" not in html
    stored = InboxEvent.objects.get()
    assert f"/admin/ingestion/inboxevent/{stored.pk}/change/" in html
    assert "&quot;name&quot;: &quot;Acme&quot;" in html


def test_the_integration_page_shows_conflicts(deliver, client, logged_in):
    deliver.send(client_event("Acme"))
    deliver.send(client_event("Changed"))
    logged_in("integration")
    html = client.get("/panels/health_summary/").content.decode()
    assert "1 with other content" in html


# --- Events from the future -----------------------------------------------------------------
def _at(offset):
    import datetime as dt

    return dt.datetime.now(dt.UTC) + offset


def test_an_event_more_than_a_day_ahead_is_a_dead_letter_listed_in_rejected(deliver, process):
    import datetime as dt

    ahead = make_event("client.upserted", {"client_id": "c-9", "name": "Clock skew"},
                       event_id="evt-future", time=_at(dt.timedelta(hours=24, minutes=5)))
    near = make_event("client.upserted", {"client_id": "c-1", "name": "Acme"},
                      time=_at(dt.timedelta(hours=23, minutes=55)))
    body = deliver.send(near, ahead)
    assert body["accepted"] == 1
    [rejected] = body["rejected"]
    assert (rejected["index"], rejected["id"]) == (1, "evt-future")
    assert "time in the future" in " ".join(rejected["errors"])
    dead = InboxEvent.objects.get(status="dead")
    assert dead.raw == ahead and "time in the future" in " ".join(dead.errors)
    process()
    assert list(Client.objects.values_list("client_id", flat=True)) == ["c-1"]


def test_replay_checks_the_time_against_the_moment_of_the_replay(deliver, monkeypatch):
    import datetime as dt

    from django.utils import timezone

    deliver.send(make_event("client.upserted", {"client_id": "c-9", "name": "Later"},
                            time=_at(dt.timedelta(hours=30))))
    dead = InboxEvent.objects.get(status="dead")
    assert pipeline.replay([dead.pk])["processed"] == 0  # still ahead of now
    dead.refresh_from_db()
    assert dead.status == "dead" and "time in the future" in " ".join(dead.errors)

    real_now = timezone.now
    monkeypatch.setattr(timezone, "now", lambda: real_now() + dt.timedelta(hours=8))
    assert pipeline.replay([dead.pk])["processed"] == 1
    assert Client.objects.get().name == "Later"


# --- Repeats of a dead letter -----------------------------------------------------------------
def test_an_identical_resend_of_a_dead_letter_is_a_duplicate(deliver):
    """A dead letter kept without a key (its envelope was refused) is not stored again when
    the very same event comes again, in the same batch or later: a repeat has no second
    effect."""
    import datetime as dt

    ahead = make_event("client.upserted", {"client_id": "c-9", "name": "Later"},
                       event_id="evt-ahead", time=_at(dt.timedelta(days=3)))
    broken = {"specversion": "1.0", "id": "evt-broken", "type": "client.upserted"}
    first = deliver.send(ahead, broken, ahead)
    assert (first["accepted"], first["duplicates"], len(first["rejected"])) == (0, 1, 2)
    again = deliver.send(broken, ahead)
    assert again == {"accepted": 0, "duplicates": 2, "rejected": []}
    assert InboxEvent.objects.filter(status="dead").count() == 2
    assert not DuplicateDelivery.objects.filter(conflict=True).exists()


def test_a_corrected_resend_of_a_dead_letter_is_taken(deliver):
    import datetime as dt

    ahead = make_event("client.upserted", {"client_id": "c-9", "name": "Later"},
                       event_id="evt-ahead", time=_at(dt.timedelta(days=3)))
    deliver.send(ahead)
    corrected = {**ahead, "time": "2026-11-02T10:00:00Z"}
    assert deliver.send(corrected) == {"accepted": 1, "duplicates": 0, "rejected": []}
