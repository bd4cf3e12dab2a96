"""Inbox rows → business state: lifecycle, last writer wins, placeholders, poison events."""
import dataclasses
import datetime as dt
from decimal import Decimal

import pytest

from ingestion import catalog, pipeline
from ingestion.events import make_event
from ingestion.models import InboxEvent
from opsview.models import Client, Invoice, Person, Project, RevenueRecognition, TimeEntry

T0 = dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.UTC)


def at(hours):
    return T0 + dt.timedelta(hours=hours)


def entry_event(stage, hours_offset, entry_id="te-1", **data):
    payload = {"time_entry_id": entry_id, "project_id": "p-1", "person_id": "u-1",
               "work_date": "2026-11-02", "hours": "8.00", "billable": True, **data}
    return make_event(f"time_entry.{stage}", payload, time=at(hours_offset))


def project_event(hours_offset=0, project_id="p-1", **data):
    payload = {"project_id": project_id, "client_id": "c-1", "name": "Atlas rollout",
               "practice": "Data", "legal_entity": "US", "currency": "USD",
               "billing_method": "time_and_materials", "status": "active",
               "rate_card_id": "rc-1", **data}
    return make_event("project.upserted", payload, time=at(hours_offset))


def test_status_is_highest_rank_whatever_the_arrival_order(deliver, process):
    deliver.send(entry_event("posted", 30), entry_event("submitted", 0),
                 entry_event("approved", 5))
    process()
    entry = TimeEntry.objects.get()
    assert entry.status == "posted"
    assert (entry.submitted_at, entry.approved_at, entry.posted_at) == (at(0), at(5), at(30))


def test_rejected_then_approved_later_by_time_wins(deliver, process):
    deliver.send(entry_event("approved", 10), entry_event("rejected", 5))
    process()
    assert TimeEntry.objects.get().status == "approved"
    deliver.send(entry_event("rejected", 20, entry_id="te-1"))
    process()
    assert TimeEntry.objects.get().status == "rejected"


def test_each_data_field_keeps_the_latest_event_that_carried_it(deliver, process):
    deliver.send(entry_event("approved", 5, hours="7.50"),
                 entry_event("submitted", 0, hours="8.00", bill_rate="150"),
                 entry_event("posted", 8, hours="7.50", erp_document_id="ERP-9"))
    process()
    entry = TimeEntry.objects.get()
    assert entry.hours == Decimal("7.50")
    assert entry.bill_rate == Decimal("150")
    assert entry.erp_document_id == "ERP-9"


def test_money_and_hours_are_decimals_from_strings_or_numbers(deliver, process):
    deliver.send(entry_event("approved", 1, entry_id="a", hours="7.10", bill_rate=133.33),
                 entry_event("approved", 1, entry_id="b", hours=0.1, bill_rate="0.20"))
    process()
    a, b = TimeEntry.objects.order_by("time_entry_id")
    assert (a.hours, a.bill_rate, b.hours, b.bill_rate) == (
        Decimal("7.10"), Decimal("133.33"), Decimal("0.10"), Decimal("0.20"))


def test_master_data_last_writer_wins_by_time_then_id(deliver, process):
    deliver.send(project_event(10, name="Newer"), project_event(5, name="Older"))
    process()
    assert Project.objects.get().name == "Newer"
    tie_a = project_event(10, name="Tie A")
    tie_a["id"] = "zzz"
    tie_b = project_event(10, name="Tie B")
    tie_b["id"] = "aaa"
    deliver.send(tie_b, tie_a)
    process()
    assert Project.objects.get().name == "Tie A"


def test_whole_master_record_is_replaced_by_the_newer_upsert(deliver, process):
    deliver.send(project_event(1, po_required=True, po_number="PO-1"))
    process()
    deliver.send(project_event(2))
    process()
    project = Project.objects.get()
    assert (project.po_required, project.po_number) == (False, "")


def test_unknown_references_become_placeholders_until_the_master_arrives(deliver, process):
    deliver.send(entry_event("approved", 1))
    process()
    assert Project.objects.get(project_id="p-1").is_placeholder
    assert Person.objects.get(person_id="u-1").is_placeholder
    deliver.send(project_event(0))
    process()
    project = Project.objects.get(project_id="p-1")
    assert not project.is_placeholder and project.name == "Atlas rollout"
    assert project.client.is_placeholder  # c-1 is named but not yet sent
    assert TimeEntry.objects.get().project == project


def test_invoice_lifecycle_blocked_then_issued(deliver, process):
    base = {"invoice_id": "inv-1", "client_id": "c-1", "amount": "1200.00", "currency": "USD"}
    deliver.send(
        make_event("invoice.issued", {**base, "issued_on": "2026-11-05", "due_on": "2026-12-05"},
                   time=at(50)),
        make_event("invoice.blocked", {**base, "blocked_reason": "missing_po"}, time=at(10)),
        make_event("invoice.drafted", base, time=at(0)),
    )
    process()
    invoice = Invoice.objects.get()
    assert (invoice.status, invoice.blocked_reason) == ("issued", "missing_po")
    assert invoice.issued_on == dt.date(2026, 11, 5) and invoice.blocked_at == at(10)


def test_revenue_recognized_for_a_period_is_replaced_by_a_later_report(deliver, process):
    def revenue(hours, amount):
        return make_event("revenue.recognized", {"project_id": "p-1", "period": "2026-10",
                                                 "amount": amount, "currency": "USD"},
                          time=at(hours))
    deliver.send(revenue(5, "900.00"), revenue(1, "1000.00"))
    process()
    assert RevenueRecognition.objects.get().amount == Decimal("900.00")


def test_duplicate_delivery_has_no_second_effect(deliver, process):
    events = [entry_event("approved", 1), project_event(0)]
    deliver.send(*events)
    process()
    before = list(TimeEntry.objects.values())
    assert deliver.send(*events)["duplicates"] == 2
    process()
    assert list(TimeEntry.objects.values()) == before
    assert InboxEvent.objects.count() == 2


def test_invalid_data_is_dead_lettered_with_its_errors_and_replayable(deliver, process):
    bad = entry_event("approved", 1, hours="lots")
    good = entry_event("approved", 1, entry_id="te-2")
    deliver.send(bad, good)
    process()
    dead = InboxEvent.objects.get(status="dead")
    assert dead.event_id == bad["id"]
    assert any("hours" in e for e in dead.errors)
    assert TimeEntry.objects.filter(time_entry_id="te-2").exists()

    # The sender cannot resend the same id; an operator fixes the stored data and replays.
    dead.raw["data"]["hours"] = "6.00"
    dead.save()
    assert pipeline.replay([dead.pk])["processed"] == 1
    assert TimeEntry.objects.get(time_entry_id="te-1").hours == Decimal("6.00")


def test_envelope_dead_letter_is_replayed_once_valid(deliver):
    broken = entry_event("approved", 1)
    broken["time"] = "not a time"
    deliver.send(broken)
    dead = InboxEvent.objects.get()
    assert dead.event_id is None
    dead.raw["time"] = at(1).isoformat()
    dead.save()
    assert pipeline.replay()["processed"] == 1
    dead.refresh_from_db()
    assert (dead.status, dead.event_id) == ("processed", broken["id"])


def replacing_invoices(apply):
    """The catalog's targets with the invoices' applier replaced by `apply`."""
    return tuple(dataclasses.replace(target, apply=apply) if target is catalog.INVOICE
                 else target for target in catalog.TARGETS)


def test_poison_event_is_dead_lettered_while_its_neighbours_land(deliver, process, monkeypatch):
    real_apply = catalog.INVOICE.apply

    def apply_or_explode(events, outcome):
        if any(contract.invoice_id == "inv-poison" for _, contract in events):
            raise RuntimeError("ERP adapter bug")
        return real_apply(events, outcome)

    monkeypatch.setattr(catalog, "TARGETS", replacing_invoices(apply_or_explode))
    base = {"client_id": "c-1", "amount": "10.00", "currency": "USD"}
    deliver.send(
        make_event("invoice.drafted", {"invoice_id": "inv-ok", **base}),
        make_event("invoice.drafted", {"invoice_id": "inv-poison", **base}),
        entry_event("approved", 1),
        project_event(0),
    )
    process()
    statuses = dict(InboxEvent.objects.values_list("raw__data__invoice_id", "status"))
    assert statuses["inv-poison"] == "dead"
    assert statuses["inv-ok"] == "processed"
    assert Invoice.objects.filter(invoice_id="inv-ok").exists()
    assert not Invoice.objects.filter(invoice_id="inv-poison").exists()
    assert TimeEntry.objects.count() == 1 and Project.objects.get().name == "Atlas rollout"
    poison = InboxEvent.objects.get(status="dead")
    assert "ERP adapter bug" in poison.errors[0]
    assert InboxEvent.objects.filter(status="pending").count() == 0


def test_processing_twice_is_a_no_op(deliver):
    deliver.send(entry_event("approved", 1))
    ids = list(InboxEvent.objects.values_list("pk", flat=True))
    assert len(pipeline.process_events(ids).processed) == 1
    assert len(pipeline.process_events(ids).processed) == 0
    assert InboxEvent.objects.get().attempts == 1


@pytest.mark.django_db
def test_client_placeholder_created_by_invoice_is_filled_by_the_master(deliver, process):
    deliver.send(make_event("invoice.drafted", {"invoice_id": "i", "client_id": "c-9",
                                                "amount": "1", "currency": "EUR"}))
    process()
    assert Client.objects.get().is_placeholder
    deliver.send(make_event("client.upserted", {"client_id": "c-9", "name": "Globex"}))
    process()
    client = Client.objects.get()
    assert (client.is_placeholder, client.name) == (False, "Globex")


def test_transient_database_error_leaves_the_batch_pending_not_dead(deliver, monkeypatch):
    from django.db import OperationalError

    def deadlock(events, outcome):
        raise OperationalError("deadlock detected")

    monkeypatch.setattr(catalog, "TARGETS", replacing_invoices(deadlock))
    deliver.send(make_event("invoice.drafted", {"invoice_id": "i", "client_id": "c",
                                                "amount": "1", "currency": "USD"}),
                 entry_event("approved", 1))
    with pytest.raises(OperationalError):
        pipeline.process_events(limit=10)
    assert set(InboxEvent.objects.values_list("status", flat=True)) == {"pending"}
    assert not TimeEntry.objects.exists()

    monkeypatch.undo()
    pipeline.drain_inbox()
    assert set(InboxEvent.objects.values_list("status", flat=True)) == {"processed"}


def test_replaying_a_dead_letter_stored_altered_says_so(deliver):
    """NUL cannot be stored, so the dead letter keeps U+FFFD in its place: a replay processes
    that copy, not what was sent, and the row and the replay's answer say so."""
    sent = entry_event("posted", 1, erp_document_id="ERP\u0000-7")
    deliver.send(sent)
    dead = InboxEvent.objects.get()
    assert dead.raw["data"]["erp_document_id"] == "ERP\ufffd-7"
    assert any(e.startswith("stored altered:") and "U+FFFD" in e for e in dead.errors)

    result = pipeline.replay([dead.pk])
    assert (result["processed"], result["altered"]) == (1, 1)
    dead.refresh_from_db()
    assert dead.status == "processed"
    assert any(e.startswith("stored altered:") for e in dead.errors), dead.errors
    assert any(e.startswith("replay:") and "altered" in e for e in dead.errors), dead.errors
    assert TimeEntry.objects.get().erp_document_id == "ERP\ufffd-7"


def test_replay_command_and_case_page_tell_of_altered_copies(deliver, logged_in, client):
    from io import StringIO

    from django.core.management import call_command

    from exceptions.models import Case
    from exceptions.rules import dead_letter, reconcile

    deliver.send(entry_event("posted", 1, erp_document_id="ERP\u0000-7"))
    deliver.send(entry_event("posted", 2, entry_id="te-2", erp_document_id="ERP\u0000-8"))
    first, _second = InboxEvent.objects.order_by("pk")
    out = StringIO()
    call_command("replay", str(first.pk), stdout=out)
    assert "1 from a copy stored altered" in out.getvalue()

    reconcile("dead_letter", dead_letter, count=False)
    case = Case.objects.get(type="dead_letter")
    logged_in("integration")
    response = client.post(f"/exceptions/{case.pk}/replay", follow=True)
    assert "1 from a copy stored altered" in response.content.decode()
    assert "1 from a copy stored altered" in case.entries.filter(action="comment").last().comment


# --- An empty selection replays nothing ----------------------------------------------------
def _two_dead_letters(deliver, process):
    deliver.send(entry_event("approved", 1, hours="lots"),
                 entry_event("approved", 1, entry_id="te-2", hours="many"))
    process()
    return list(InboxEvent.objects.filter(status="dead").order_by("pk"))


def test_replaying_an_empty_selection_replays_nothing(deliver, process):
    _two_dead_letters(deliver, process)
    result = pipeline.replay([])
    assert result["replayed"] == 0
    assert InboxEvent.objects.filter(status="dead").count() == 2


def test_the_replay_command_needs_a_selection_or_all(deliver, process):
    from io import StringIO

    from django.core.management import CommandError, call_command

    first, _ = _two_dead_letters(deliver, process)
    for entry in first, _:
        entry.raw["data"]["hours"] = "1.00"
        entry.save()
    with pytest.raises(CommandError, match="--all"):
        call_command("replay", stdout=StringIO())
    out = StringIO()
    call_command("replay", "999999", stdout=out)  # no such dead letter: nothing
    assert "0 dead letters selected" in out.getvalue()
    assert InboxEvent.objects.filter(status="dead").count() == 2
    call_command("replay", "--all", stdout=StringIO())
    assert InboxEvent.objects.filter(status="dead").count() == 0


def test_the_case_page_replays_only_its_own_dead_letters(deliver, process, client, logged_in):
    from exceptions.models import Case
    from exceptions.rules import dead_letter, reconcile
    from ingestion.models import Source
    from tests.conftest import Delivery

    other_source = Source.objects.create(slug="boomi", name="Boomi", rate_limit_per_minute=0)
    deliver.send(entry_event("approved", 1, hours="lots"))
    Delivery(client, other_source).send(entry_event("approved", 1, entry_id="te-2", hours="x"))
    process()
    first, second = InboxEvent.objects.filter(status="dead").order_by("pk")
    reconcile("dead_letter", dead_letter, count=False)
    case = Case.objects.get(type="dead_letter", object_id="mulesoft")
    for row in first, second:  # both fixed; only the first is this case's
        row.raw["data"]["hours"] = "1.00"
        row.save()
    logged_in("integration")
    client.post(f"/exceptions/{case.pk}/replay")
    first.refresh_from_db()
    assert first.status == "processed"
    # The case's rows are replayed already: a second click replays nothing at all.
    response = client.post(f"/exceptions/{case.pk}/replay", follow=True)
    second.refresh_from_db()
    assert second.status == "dead"
    assert "no dead letters left to replay" in response.content.decode().lower()


def test_a_dead_letter_kept_at_intake_opens_its_case_at_once(
        deliver, django_capture_on_commit_callbacks):
    """An event refused at intake (its envelope invalid, its time in the future) never goes
    through processing; its dead_letter case opens as the rows are committed, not at the
    next time-based evaluation."""
    from exceptions.models import Case

    broken = entry_event("approved", 1)
    broken["time"] = "not a time"
    with django_capture_on_commit_callbacks(execute=True):
        deliver.send(broken)
    case = Case.objects.get(type="dead_letter")
    assert case.detail["inbox_ids"] == [InboxEvent.objects.get().pk]
