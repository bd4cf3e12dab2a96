"""An item that names a project, person or invoice that never arrives is counted nowhere it
should not be, raises exactly one unknown_reference, and loses nothing valid beside it."""
import datetime as dt

from exceptions.models import Case
from exceptions.rules import evaluate_time_rules
from ingestion.events import make_event
from opsview.models import TimeEntry
from reporting import kpis

from .firm import at, entry, person, project

MARCH = dt.date(2026, 3, 31)


def test_items_naming_unknown_records_count_nowhere_and_raise_one_case_each(deliver, process):
    good = [
        make_event("client.upserted", {"client_id": "C1", "name": "Acme"}),
        project("P1", "C1", "Data", "US", "USD", "time_and_materials", rate_card_id="rc1"),
        person("U1", "Data", "50.00", "100.00"),
        *entry("OK-1", "P1", "U1", "2026-03-02", "2.00", [("approved", "2026-03-02T18:00:00")]),
    ]
    unknown = [
        # a project, a person and an invoice nobody sends, each named twice
        *entry("X-1", "P-GHOST", "U1", "2026-03-03", "3.00", [("approved", "2026-03-03T18:00:00")]),
        *entry("X-2", "P-GHOST", "U1", "2026-03-04", "3.00", [("approved", "2026-03-04T18:00:00")]),
        *entry("X-3", "P1", "U-GHOST", "2026-03-05", "4.00", [("approved", "2026-03-05T18:00:00")]),
        *entry("X-4", "P1", "U-GHOST", "2026-03-06", "4.00", [("approved", "2026-03-06T18:00:00")]),
        *entry("X-5", "P1", "U1", "2026-03-07", "5.00", [("approved", "2026-03-07T18:00:00")]),
        *entry("X-5", "P1", "U1", "2026-03-07", "5.00", [("invoiced", "2026-03-09T09:00:00")],
               invoice_id="I-GHOST"),
        *entry("X-6", "P1", "U1", "2026-03-08", "1.00", [("approved", "2026-03-08T18:00:00")]),
        *entry("X-6", "P1", "U1", "2026-03-08", "1.00", [("invoiced", "2026-03-10T09:00:00")],
               invoice_id="I-GHOST"),
    ]
    body = deliver.send(*good, *unknown)
    assert (body["accepted"], body["rejected"]) == (len(good) + len(unknown), [])
    process()
    assert TimeEntry.objects.count() == 7  # nothing valid is lost

    wip = kpis.wip(as_of=MARCH)["currencies"]["USD"]
    # OK-1 200 + X-5 500 + X-6 100 (their invoice never came: unbilled); the items on the
    # unknown project and person count nowhere until their master records arrive.
    assert wip["time"] == "800.00"
    utilization = kpis.utilization(start=dt.date(2026, 3, 1), end=MARCH)
    assert utilization["total_hours"] == "8.00"  # OK-1, X-5, X-6
    latency = kpis.posting_latency(start=dt.date(2026, 3, 1), end=MARCH)
    assert latency["backlog"]["count"] == 3

    evaluate_time_rules(now=at("2026-03-20T00:00:00"))
    unknown_cases = Case.objects.filter(type="unknown_reference")
    assert sorted(unknown_cases.values_list("fingerprint", flat=True)) == [
        "invoice:I-GHOST", "person:U-GHOST", "project:P-GHOST"]
    invoice_case = unknown_cases.get(object_kind="invoice")
    assert (str(invoice_case.money_at_stake), invoice_case.currency) == ("600.00", "USD")
    assert invoice_case.began_at == at("2026-03-09T09:00:00")
    # No other case names the unknown project or person.
    others = Case.objects.exclude(type="unknown_reference")
    assert not others.filter(project_id="P-GHOST").exists()
    assert not others.filter(object_id__in=["X-1", "X-2", "X-3", "X-4"]).exists()
