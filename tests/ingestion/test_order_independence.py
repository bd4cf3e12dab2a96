"""Any permutation of one set of events, in any batching, yields the same business state."""
import datetime as dt

from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingestion import pipeline
from ingestion.events import make_event
from ingestion.intake import store_events
from opsview import models as state

T0 = dt.datetime(2026, 10, 1, 8, 0, tzinfo=dt.timezone.utc)


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
]

VOLATILE = {"id", "updated_at", "first_seen_at", "placeholder_since", "client_id", "project_id",
            "person_id"}


def snapshot():
    """Every business row by its external key, without surrogate keys or processing times."""
    result = {}
    for model in (state.Client, state.Project, state.Person, state.TimeEntry, state.Invoice,
                  state.Milestone, state.RevenueRecognition, state.ReconciliationReport):
        rows = []
        for row in model.objects.all():
            values = {f.attname: getattr(row, f.attname) for f in model._meta.concrete_fields
                      if f.attname not in VOLATILE}
            for ref in ("client", "project", "person"):
                if ref in {f.name for f in model._meta.get_fields()}:
                    related = getattr(row, ref)
                    values[ref] = related and getattr(related, f"{ref}_id")
            rows.append(values)
        result[model.__name__] = sorted(rows, key=repr)
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


@settings(max_examples=30, deadline=None,
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
    te1, te2, te3 = state.TimeEntry.objects.order_by("time_entry_id")
    assert (te1.status, str(te1.hours), te1.erp_document_id) == ("posted", "7.50", "ERP-1")
    assert (te2.status, str(te2.hours)) == ("approved", "6.00")
    assert te3.status == "reversed"
    project = state.Project.objects.get(project_id="p-1")
    assert (project.name, project.po_required, project.rate_card_id) == ("Atlas tie", True, "")
    assert state.Person.objects.get().name == "Ann Lee"
    assert state.Invoice.objects.get().status == "issued"
    assert state.Milestone.objects.get().status == "invoiced"
    assert str(state.RevenueRecognition.objects.get().amount) == "12.00"
    assert state.ReconciliationReport.objects.get().target_count == 10
