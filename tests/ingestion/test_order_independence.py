"""Any permutation of one set of events, in any batching, yields the same business state."""
import datetime as dt

from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingestion import pipeline
from ingestion.events import make_event
from ingestion.intake import store_events
from opsview import models as state
from reporting import kpis

T0 = dt.datetime(2026, 10, 1, 8, 0, tzinfo=dt.UTC)
DAY = 24 * 60  # minutes


def ev(event_type, minutes, data, event_id=None):
    return make_event(event_type, data, time=T0 + dt.timedelta(minutes=minutes),
                      event_id=event_id or f"{event_type}-{minutes}-{sorted(data.items())[0][1]}")


def entry(stage, minutes, entry_id, **extra):
    data = {"time_entry_id": entry_id, "project_id": "p-1", "person_id": "u-1",
            "work_date": "2026-09-30", "hours": "8.00", "billable": True, **extra}
    return ev(f"time_entry.{stage}", minutes, data, event_id=f"{entry_id}-{stage}-{minutes}")


def project(minutes, name, event_id, **extra):
    data = {"project_id": "p-1", "client_id": "c-1", "name": name, "practice": "Data",
            "legal_entity": "US", "currency": "USD", "billing_method": "time_and_materials",
            "status": "active", **extra}
    return ev("project.upserted", minutes, data, event_id=event_id)


EVENTS = [
    project(0, "Atlas", "p-a"),
    project(30, "Atlas II", "p-b", rate_card_id="rc-1"),
    project(30, "Atlas tie", "p-c", po_required=True),  # same time: the greater id wins
    ev("person.upserted", 5, {"person_id": "u-1", "name": "Ann", "practice": "Data",
                              "cost_rate": "80.00", "bill_rate": "150.00"}, "u-a"),
    ev("person.upserted", 50, {"person_id": "u-1", "name": "Ann Lee", "practice": "Data",
                               "cost_rate": "85.00", "bill_rate": "160.00"}, "u-b"),
    ev("client.upserted", 1, {"client_id": "c-1", "name": "Acme"}, "c-a"),
    entry("submitted", 10, "te-1", hours="8.00"),
    entry("approved", 20, "te-1", hours="7.50"),
    entry("posted", 40, "te-1", hours="7.50", erp_document_id="ERP-1"),
    entry("submitted", 10, "te-2"),
    entry("rejected", 15, "te-2"),
    entry("approved", 25, "te-2", hours="6.00"),
    entry("approved", 15, "te-3", bill_rate="175.00"),
    entry("reversed", 90, "te-3"),
    ev("invoice.drafted", 60, {"invoice_id": "i-1", "client_id": "c-1", "amount": "100.00",
                               "currency": "USD"}, "i-a"),
    ev("invoice.blocked", 61, {"invoice_id": "i-1", "client_id": "c-1", "amount": "100.00",
                               "currency": "USD", "blocked_reason": "missing_po"}, "i-b"),
    ev("invoice.issued", 62, {"invoice_id": "i-1", "client_id": "c-1", "amount": "120.00",
                              "currency": "USD", "issued_on": "2026-10-01"}, "i-c"),
    ev("milestone.invoiced", 70, {"milestone_id": "m-1", "project_id": "p-2", "name": "Go-live",
                                  "amount": "5000.00", "invoice_id": "i-9"}, "m-b"),
    ev("milestone.completed", 65, {"milestone_id": "m-1", "project_id": "p-2", "name": "Go-live",
                                   "amount": "5000.00", "completed_on": "2026-10-01"}, "m-a"),
    ev("revenue.recognized", 80, {"project_id": "p-1", "period": "2026-09", "amount": "10.00",
                                  "currency": "USD"}, "r-a"),
    ev("revenue.recognized", 85, {"project_id": "p-1", "period": "2026-09", "amount": "12.00",
                                  "currency": "USD"}, "r-b"),
    ev("reconciliation.reported", 100, {"flow": "psa-erp", "object_type": "time_entry",
                                        "period_start": "2026-09-01", "period_end": "2026-09-30",
                                        "source_count": 10, "target_count": 9}, "rec-a"),
    ev("reconciliation.reported", 120, {"flow": "psa-erp", "object_type": "time_entry",
                                        "period_start": "2026-09-01", "period_end": "2026-09-30",
                                        "source_count": 10, "target_count": 10}, "rec-b"),
    # Over days: an approval, rejection and re-approval; an item billed, its invoice voided,
    # billed again on another; an invoice paid.
    entry("approved", DAY, "te-5"),
    entry("rejected", 3 * DAY, "te-5"),
    entry("approved", 6 * DAY, "te-5"),
    entry("approved", 2 * DAY, "te-4", hours="4.00"),
    entry("invoiced", 4 * DAY, "te-4", hours="4.00", invoice_id="i-2"),
    entry("invoiced", 9 * DAY, "te-4", hours="4.00", invoice_id="i-3"),
    ev("invoice.drafted", 3 * DAY, {"invoice_id": "i-2", "client_id": "c-1", "amount": "600.00",
                                    "currency": "USD"}, "i2-a"),
    ev("invoice.issued", 5 * DAY, {"invoice_id": "i-2", "client_id": "c-1", "amount": "600.00",
                                   "currency": "USD", "issued_on": "2026-10-06"}, "i2-b"),
    ev("invoice.voided", 8 * DAY, {"invoice_id": "i-2", "client_id": "c-1", "amount": "600.00",
                                   "currency": "USD"}, "i2-c"),
    ev("invoice.issued", 10 * DAY, {"invoice_id": "i-3", "client_id": "c-1", "amount": "640.00",
                                    "currency": "USD", "issued_on": "2026-10-11"}, "i3-a"),
    ev("invoice.paid", 7 * DAY, {"invoice_id": "i-1", "client_id": "c-1", "amount": "120.00",
                                 "currency": "USD", "paid_on": "2026-10-08"}, "i-d"),
]
AS_OF = [dt.date(2026, 10, day) for day in range(1, 14)]

# Surrogate keys, processing times, and the receipt time of a client (by design: "first
# seen" is by receipt) differ between deliveries; everything else must not.
VOLATILE = {"id", "updated_at", "first_seen_at", "first_received_at"}


def snapshot():
    """Every business row by its external key, without surrogate keys or processing times."""
    result = {}
    for model in (state.Client, state.Project, state.Person, state.TimeEntry, state.Invoice,
                  state.Milestone, state.RevenueRecognition, state.ReconciliationReport):
        rows = []
        for row in model.objects.all():
            # References by their external ids, not by surrogate keys.
            values = {f.attname: getattr(row, f.attname) for f in model._meta.concrete_fields
                      if f.attname not in VOLATILE and not f.is_relation}
            for ref in ("client", "project", "person", "invoice"):
                if ref in {f.name for f in model._meta.concrete_fields}:
                    related = getattr(row, ref)
                    values[ref] = related and getattr(related, f"{ref}_id")
            rows.append(values)
        result[model.__name__] = sorted(rows, key=repr)
    # The point-in-time figures of every day the events span.
    result["wip"] = {day: kpis.wip(as_of=day)["currencies"] for day in AS_OF}
    result["receivables"] = {day: kpis.receivables(as_of=day)["currencies"] for day in AS_OF}
    return result


def deliver_and_process(source, events, batch_sizes):
    """Deliver in consecutive batches of the given sizes, processing after each."""
    start = 0
    for size in batch_sizes:
        if start >= len(events):
            break
        store_events(source, events[start:start + size])
        start += size
        pipeline.drain_inbox(batch_size=size)
    if start < len(events):
        store_events(source, events[start:])
    pipeline.drain_inbox()


EXPECTED = {}


class Rollback(Exception):
    pass


def state_after(source, events, batch_sizes):
    try:
        with transaction.atomic():
            deliver_and_process(source, events, batch_sizes)
            captured = snapshot()
            raise Rollback
    except Rollback:
        return captured


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(order=st.permutations(range(len(EVENTS))),
       batch_sizes=st.lists(st.integers(min_value=1, max_value=10), min_size=1, max_size=8),
       duplicated=st.sets(st.integers(min_value=0, max_value=len(EVENTS) - 1), max_size=5))
def test_any_permutation_and_batching_gives_the_time_ordered_state(source, order, batch_sizes,
                                                                    duplicated):
    if "expected" not in EXPECTED:
        in_time_order = sorted(EVENTS, key=lambda e: (e["time"], e["id"]))
        EXPECTED["expected"] = state_after(source, in_time_order, [len(EVENTS)])
    expected = EXPECTED["expected"]
    shuffled = [EVENTS[i] for i in order] + [EVENTS[i] for i in sorted(duplicated)]
    assert state_after(source, shuffled, batch_sizes) == expected


def test_the_time_ordered_state_is_the_one_a_person_expects(source):
    deliver_and_process(source, sorted(EVENTS, key=lambda e: (e["time"], e["id"])), [100])
    te1, te2, te3 = state.TimeEntry.objects.filter(
        time_entry_id__in=["te-1", "te-2", "te-3"]).order_by("time_entry_id")
    assert (te1.status, str(te1.hours), te1.erp_document_id) == ("posted", "7.50", "ERP-1")
    assert (te2.status, str(te2.hours)) == ("approved", "6.00")
    assert te3.status == "reversed"
    project = state.Project.objects.get(project_id="p-1")
    assert (project.name, project.po_required, project.rate_card_id) == ("Atlas tie", True, "")
    assert state.Person.objects.get().name == "Ann Lee"
    assert state.Invoice.objects.get(invoice_id="i-1").status == "paid"
    milestone = state.Milestone.objects.get()
    assert milestone.status == "invoiced"
    # The invoice it names never arrived: a placeholder, since the event that named it.
    assert (milestone.invoice.invoice_id, milestone.invoice.is_placeholder) == ("i-9", True)
    assert milestone.invoice.placeholder_since == T0 + dt.timedelta(minutes=70)
    assert str(state.RevenueRecognition.objects.get().amount) == "12.00"
    assert state.ReconciliationReport.objects.get().target_count == 10


def test_the_point_in_time_figures_are_the_ones_a_person_expects(source):
    """te-1 7.5 h and te-2 6 h (from 1 Oct), te-5 8 h approved 2 Oct, rejected 4 Oct,
    approved 7 Oct, te-4 4 h approved 3 Oct, billed 6–8 Oct on i-2 (voided on the 9th) and
    from 11 Oct on i-3; all at 160 an hour."""
    deliver_and_process(source, sorted(EVENTS, key=lambda e: (e["time"], e["id"])), [100])
    expected = {1: "2160.00", 2: "3440.00", 3: "4080.00", 4: "2800.00", 5: "2800.00",
                6: "2160.00", 7: "3440.00", 9: "4080.00", 10: "4080.00", 11: "3440.00"}
    assert {day: kpis.wip(as_of=dt.date(2026, 10, day))["currencies"]["USD"]["time"]
            for day in expected} == expected
    assert kpis.wip(as_of=dt.date(2026, 10, 5))["currencies"]["USD"]["in_billing"] == "640.00"
    open_ar = {day: kpis.receivables(as_of=dt.date(2026, 10, day))["currencies"]["USD"]["open_ar"]
               for day in (7, 8, 9, 11)}
    assert open_ar == {7: "720.00", 8: "600.00", 9: "0.00", 11: "640.00"}
